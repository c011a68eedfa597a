/**
 * Sandbox abuse: endless loops, memory bombs, escapes to the host, prototype pollution, require. Each yields a
 * ConverterError, and other converters keep running with normal latency.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { ConverterEngine, type ConverterError } from '../../converters/index.ts'
import { fixture, inline } from './fixtures/scripts.ts'

const engine = new ConverterEngine({ isolates: 2 })
after(() => engine.close())

const lht65 = fixture('ttn', 'ttn-dragino-lht65')
const frame = Uint8Array.from(Buffer.from('CBF60B0D0376010ADD7FFF', 'hex'))

/** A TTN converter whose decodeUplink body is `body`. */
const uplink = (body: string) => inline('ttn', `function decodeUplink(input) {\n${body}\n}`)

/** Asserts that a normal converter still answers, in well under the time limit. */
async function othersStillRun(): Promise<void> {
  const started = performance.now()
  const { output } = await engine.run(lht65, 'decodeUplink', { bytes: frame, fPort: 2 })
  assert.equal((output as { data: { TempC_SHT: number } }).data.TempC_SHT, 28.29)
  assert.ok(performance.now() - started < 150, 'a normal call is served well within the 200 ms limit')
}

test('while (true) {} is stopped at the time limit: timeout', async () => {
  const started = performance.now()
  await assert.rejects(
    engine.run(uplink('while (true) {}'), 'decodeUplink', { bytes: [] }),
    (err: ConverterError) => {
      assert.equal(err.code, 'timeout')
      assert.ok(err.durationMs >= 200)
      return true
    },
  )
  assert.ok(performance.now() - started < 2000)
  await othersStillRun()
})

test('memory bombs of 1 GiB and more: memory, the isolate replaced when it was exhausted', async () => {
  // A long time limit, so that on a loaded machine filling the heap cannot run out of time first.
  const bombed = new ConverterEngine({ isolates: 2, timeoutMs: 10_000 })
  const bombs = [
    'return new Array(1e9).fill(1)',
    'return Array.from({ length: 1e9 })',
    "var s = 'x'; while (true) s += s;",
    "return 'x'.repeat(2 ** 30)",
    "var s = 'ab'; for (var i = 0; i < 28; i++) s += s; return s.split('').length",
    "var s = 'ab'; for (var i = 0; i < 28; i++) s += s; return Object.keys(s).length",
    'return new Uint8Array(1024 * 1024 * 1024).length',
  ]
  try {
    for (const bomb of bombs) {
      await assert.rejects(bombed.run(uplink(bomb), 'decodeUplink', { bytes: [] }), (err: ConverterError) => {
        assert.equal(err.code, 'memory', `${bomb}: ${err.message}`)
        return true
      })
    }
    const replaced = bombed.stats().isolatesReplaced
    const hog = uplink('var keep = []; while (true) keep.push(new Array(1e5).fill(1.5));')
    await assert.rejects(bombed.run(hog, 'decodeUplink', { bytes: [] }), (err: ConverterError) => {
      assert.equal(err.code, 'memory')
      assert.match(err.message, /32 MiB/)
      return true
    })
    assert.equal(bombed.stats().isolatesReplaced, replaced + 1, 'the exhausted isolate was replaced')
    const { output } = await bombed.run(lht65, 'decodeUplink', { bytes: frame, fPort: 2 })
    assert.equal(
      (output as { data: { TempC_SHT: number } }).data.TempC_SHT,
      28.29,
      'other converters still run',
    )
  } finally {
    bombed.close()
  }
})

test('this.constructor.constructor does not reach the host: no process, require, timers or wasm', async () => {
  const escapeAttempt = inline('thingsboard', "return this.constructor.constructor('return process')()")
  await assert.rejects(
    engine.run(escapeAttempt, 'Decoder', { payload: [], metadata: {} }),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.match(err.message, /^ReferenceError: process is not defined/)
      return true
    },
  )
  const probe = inline(
    'thingsboard',
    `var F = this.constructor.constructor;
    return ['process', 'require', 'module', 'global', 'setTimeout', 'setInterval', 'queueMicrotask', 'fetch',
      'WebAssembly', 'SharedArrayBuffer', 'Atomics', 'Buffer'].map(function (name) { return F('return typeof ' + name)() })`,
  )
  const { output } = await engine.run(probe, 'Decoder', { payload: [], metadata: {} })
  assert.deepEqual(output, Array(12).fill('undefined'))
})

test('endless recursion is a RangeError: script', async () => {
  await assert.rejects(
    engine.run(uplink('function f(n) { return f(n + 1) + 1; }\nreturn f(0);'), 'decodeUplink', { bytes: [] }),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.match(err.message, /^RangeError: Maximum call stack size exceeded/)
      return true
    },
  )
  await othersStillRun()
})

test("require('fs') is a ReferenceError: script", async () => {
  await assert.rejects(
    engine.run(uplink("return require('fs')"), 'decodeUplink', { bytes: [] }),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.equal(err.message, 'ReferenceError: require is not defined (line 2)')
      return true
    },
  )
})

test('prototype pollution in one call is not seen by the next call, nor by another converter', async () => {
  const probe = `return { data: { polluted: 'polluted' in {}, push: [1].push(2), parse: JSON.parse('2'), trim: ' a '.trim(),
    max: Math.max(1, 2), test: /x/.test('y'), json: typeof JSON.stringify, date: new Date(0).getTime() } };`
  const clean = {
    polluted: false,
    push: 2,
    parse: 2,
    trim: 'a',
    max: 2,
    test: false,
    json: 'function',
    date: 0,
  }
  const polluter = uplink(`if (input.fPort === 1) {
    Object.prototype.polluted = 1;
    ({}).__proto__.polluted = 2;
    Array.prototype.push = function () { return 'hacked'; };
    String.prototype.trim = null;
    Math.max = function () { return 0; };
    RegExp.prototype.test = function () { return true; };
    JSON = { parse: function () { return 'hacked'; } };
    Date.prototype.getTime = function () { return -1; };
    try { Object.defineProperty(Object.prototype, 'polluted', { value: 3 }); } catch (e) {}
    try { Object.setPrototypeOf(Array.prototype, { push: null }); } catch (e) {}
    return { data: 'tried' };
  }
  ${probe}`)
  assert.deepEqual((await engine.run(polluter, 'decodeUplink', { bytes: [], fPort: 1 })).output, {
    data: 'tried',
  })
  assert.deepEqual((await engine.run(polluter, 'decodeUplink', { bytes: [], fPort: 2 })).output, {
    data: clean,
  })
  assert.deepEqual((await engine.run(uplink(probe), 'decodeUplink', { bytes: [] })).output, { data: clean })
  // In strict code the attempt is an error rather than a silent no-op.
  const strict = uplink("'use strict'; Object.prototype.polluted = 1;")
  await assert.rejects(engine.run(strict, 'decodeUplink', { bytes: [] }), (err: ConverterError) => {
    assert.equal(err.code, 'script')
    assert.match(err.message, /^TypeError: Cannot add property polluted, object is not extensible/)
    return true
  })
})

test('frozen built-ins still let scripts override inherited properties on their own objects', async () => {
  const es5 = uplink(`
    function Reading(v) { this.v = v; }
    Reading.prototype = { describe: function () { return 'v=' + this.v; } };
    Reading.prototype.constructor = Reading;
    Reading.prototype.toString = function () { return 'Reading(' + this.v + ')'; };
    function FrameError(message) { this.message = message; }
    FrameError.prototype = Object.create(Error.prototype);
    FrameError.prototype.name = 'FrameError';
    class PortError extends RangeError { constructor(m) { super(m); this.name = 'PortError'; } }
    var r = new Reading(3), o = {};
    o.valueOf = function () { return 7; };
    return { data: { ctor: r.constructor === Reading, str: String(r), describe: r.describe(), plus: o + 1,
      frameError: String(new FrameError('short')), portError: String(new PortError('port 0')) } };`)
  assert.deepEqual((await engine.run(es5, 'decodeUplink', { bytes: [] })).output, {
    data: {
      ctor: true,
      str: 'Reading(3)',
      describe: 'v=3',
      plus: 8,
      frameError: 'FrameError: short',
      portError: 'PortError: port 0',
    },
  })
})

test('a converter stuck in a loop does not stall other converters', async () => {
  // A call that waited for a loop would take at least the 1 s time limit.
  const looping = new ConverterEngine({ isolates: 2, timeoutMs: 1000 })
  try {
    const stuck = uplink('while (true) {}')
    let stuckSettled = 0
    // Three stuck calls: one converter never holds every isolate, so they wait for each other, not for others.
    const stuckCalls = [1, 2, 3].map(() =>
      looping
        .run(stuck, 'decodeUplink', { bytes: [] })
        .then(
          () => assert.fail('a stuck call cannot succeed'),
          (err: ConverterError) => err.code,
        )
        .finally(() => stuckSettled++),
    )
    const latencies: number[] = []
    for (let i = 0; i < 50; i++) {
      const started = performance.now()
      await looping.run(lht65, 'decodeUplink', { bytes: frame, fPort: 2 })
      latencies.push(performance.now() - started)
    }
    assert.equal(stuckSettled, 0, 'the 50 calls all ran while the first loop was still running')
    assert.ok(Math.max(...latencies) < 200, `latencies ${latencies.map((l) => l.toFixed(1)).join(' ')}`)
    assert.deepEqual(await Promise.all(stuckCalls), ['timeout', 'timeout', 'timeout'])
  } finally {
    looping.close()
  }
})
