/** The engine: console capture, output rules, batching, compile/forget/close, pool counters. */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import {
  ConverterEngine,
  ConverterError,
  type ConverterResult,
  defaultFunction,
  functionsOf,
} from '../../converters/index.ts'
import { inline } from './fixtures/scripts.ts'

const engine = new ConverterEngine({ isolates: 2, maxLogLines: 5, maxOutputBytes: 10_000 })
after(() => engine.close())

const uplink = (body: string) => inline('ttn', `function decodeUplink(input) {\n${body}\n}`)
const call = (body: string, fPort?: number) => engine.run(uplink(body), 'decodeUplink', { bytes: [], fPort })

test('entry points by dialect and direction', () => {
  assert.equal(defaultFunction('thingsboard', 'uplink'), 'Decoder')
  assert.equal(defaultFunction('thingsboard', 'downlink'), 'Encoder')
  assert.equal(defaultFunction('ttn', 'uplink'), 'decodeUplink')
  assert.equal(defaultFunction('ttn', 'downlink'), 'encodeDownlink')
  assert.equal(defaultFunction('thinger', 'downlink'), 'downlink')
  assert.deepEqual(functionsOf('ttn'), ['decodeUplink', 'encodeDownlink', 'decodeDownlink'])
  assert.deepEqual(functionsOf('thinger'), ['uplink', 'downlink'])
})

test('options out of range throw when the engine is made', () => {
  assert.throws(() => new ConverterEngine({ memoryLimitMb: 4 }), /memoryLimitMb must be an integer >= 8/)
  assert.throws(() => new ConverterEngine({ timeoutMs: 0 }), /timeoutMs/)
  assert.throws(() => new ConverterEngine({ isolates: 1.5 }), /isolates/)
})

test('console output is captured per call, every level, objects as JSON, with a duration', async () => {
  const result = await call(
    `console.log('port', input.fPort, { a: [1] });
    console.info('i'); console.warn('w'); console.error(new TypeError('e')); console.debug(null, undefined);
    return { data: 1 };`,
    3,
  )
  assert.deepEqual(result.logs, [
    { level: 'log', message: 'port 3 {"a":[1]}' },
    { level: 'info', message: 'i' },
    { level: 'warn', message: 'w' },
    { level: 'error', message: 'TypeError: e' },
    { level: 'debug', message: 'null undefined' },
  ])
  assert.ok(result.durationMs > 0)
  const next = await call('return 1')
  assert.deepEqual(next.logs, [], 'the next call starts with no lines')
})

test('logs are bounded in lines and length, and come back with errors and timeouts', async () => {
  const many = await call("for (var i = 0; i < 20; i++) console.log('x'.repeat(3000)); return 1")
  assert.equal(many.logs.length, 6)
  assert.equal(many.logs[0].message.length, 1001)
  assert.deepEqual(many.logs[5], { level: 'warn', message: '[15 more log lines dropped]' })
  await assert.rejects(call("console.log('before'); throw new Error('boom')"), (err: ConverterError) => {
    assert.equal(err.code, 'script')
    assert.equal(err.message, 'Error: boom (line 2)')
    assert.deepEqual(err.logs, [{ level: 'log', message: 'before' }])
    return true
  })
  await assert.rejects(call("console.warn('looping'); while (true) {}"), (err: ConverterError) => {
    assert.equal(err.code, 'timeout')
    assert.deepEqual(err.logs, [{ level: 'warn', message: 'looping' }])
    return true
  })
})

test('output: JSON values, undefined, dates as ISO strings; byte arrays come back as Uint8Array', async () => {
  assert.equal((await call('return undefined')).output, undefined)
  assert.deepEqual((await call("return { d: new Date(0), n: null, s: 'é' }")).output, {
    d: '1970-01-01T00:00:00.000Z',
    n: null,
    s: 'é',
  })
  const bytes = await call(
    'return { a: new Uint8Array([1, 2]), b: new Uint8Array([9, 8, 7]).buffer, c: [new DataView(new ArrayBuffer(2))], f: new Int16Array([-1]) }',
  )
  assert.deepEqual(bytes.output, {
    a: new Uint8Array([1, 2]),
    b: new Uint8Array([9, 8, 7]),
    c: [new Uint8Array([0, 0])],
    f: [-1],
  })
})

test('output that cannot leave the sandbox: functions, cycles, BigInt, promises, too large', async () => {
  const cases: Array<[string, RegExp]> = [
    ['return { data: { f: function () {} } }', /a function at data\.f cannot leave the sandbox/],
    ['var a = { b: {} }; a.b.a = a; return a', /circular reference at b\.a/],
    ['return { n: 10n }', /a BigInt at n has no JSON form/],
    ['return Promise.resolve(1)', /returned a Promise/],
    ["return { s: 'x'.repeat(20000) }", /over the limit of 10000/],
    ['var a = {}; for (var i = 0; i < 40; i++) a = { x: a, y: a }; return a', /more than 10000 values/],
  ]
  for (const [body, message] of cases) {
    await assert.rejects(call(body), (err: ConverterError) => {
      assert.equal(err.code, 'output', body)
      assert.match(err.message, message)
      return true
    })
  }
})

test('many calls at once are batched and each gets its own result; a failing call fails alone', async () => {
  const echo = uplink(`
    if (input.fPort === 13) while (true) {}
    if (input.fPort === 66) throw new Error('bad port');
    return { data: { port: input.fPort, first: input.bytes[0] } };`)
  const calls = Array.from({ length: 200 }, (_, i) =>
    engine.run(echo, 'decodeUplink', { bytes: [i % 256], fPort: i + 1 }).then(
      (r: ConverterResult) => r.output,
      (e: ConverterError) => e.code,
    ),
  )
  const results = await Promise.all(calls)
  results.forEach((result, i) => {
    const port = i + 1
    if (port === 13) assert.equal(result, 'timeout')
    else if (port === 66) assert.equal(result, 'script')
    else assert.deepEqual(result, { data: { port, first: i % 256 } })
  })
})

test('a call that exhausts memory among others: it alone fails, the others are run again', async () => {
  const hog = uplink(`
    if (input.fPort === 7) { var keep = []; while (true) keep.push(new Array(1e5).fill(1.5)); }
    return { data: input.fPort };`)
  // A long time limit, so that on a loaded machine filling the heap cannot run out of time first.
  const roomy = new ConverterEngine({ isolates: 2, timeoutMs: 10_000 })
  try {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        roomy.run(hog, 'decodeUplink', { bytes: [], fPort: i }).then(
          (r) => r.output,
          (e: ConverterError) => e.code,
        ),
      ),
    )
    assert.deepEqual(
      results,
      results.map((_, i) => (i === 7 ? 'memory' : { data: i })),
    )
  } finally {
    roomy.close()
  }
})

test('compile: syntax errors with their line, top-level failures, a missing entry point', async () => {
  const syntax = inline('ttn', 'function decodeUplink(input) {\n  var x = 1\n  var = 2\n}')
  await assert.rejects(engine.compile(syntax), (err: ConverterError) => {
    assert.equal(err.code, 'syntax')
    assert.equal(err.message, "SyntaxError: Unexpected token '=' (line 3)")
    return true
  })
  await assert.rejects(
    engine.compile(inline('ttn', 'var table = {};\ntable.x.y = 1;')),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.match(err.message, /^TypeError: Cannot set properties of undefined .* \(line 2\)$/)
      return true
    },
  )
  await assert.rejects(engine.compile(inline('ttn', 'while (true) {}')), { code: 'timeout' })
  const uplinkOnly = inline('ttn', 'function decodeUplink() { return {} }')
  await engine.compile(uplinkOnly)
  await engine.compile(uplinkOnly, 'decodeUplink')
  await assert.rejects(engine.compile(uplinkOnly, 'decodeDownlink'), { code: 'missing-function' })
})

test('a script version keeps its context (top-level state) until forgotten; a new key starts fresh', async () => {
  const source = 'var calls = 0;\nfunction decodeUplink() { return { data: ++calls } }'
  const v1 = { key: 'counter/1@1', dialect: 'ttn' as const, script: source }
  const solo = new ConverterEngine({ isolates: 1 })
  const count = async (script: typeof v1) =>
    ((await solo.run(script, 'decodeUplink', { bytes: [] })).output as { data: number }).data
  try {
    assert.equal(await count(v1), 1)
    assert.equal(await count(v1), 2)
    assert.equal(solo.stats().contexts, 1)
    solo.forget('counter/1@')
    assert.equal(solo.stats().contexts, 0)
    assert.equal(await count(v1), 1)
    const v2 = { ...v1, key: 'counter/1@2' }
    assert.equal(await count(v2), 1)
  } finally {
    solo.close()
  }
})

test('each isolate keeps at most maxContextsPerIsolate contexts, least recently used dropped first', async () => {
  const small = new ConverterEngine({ isolates: 1, maxContextsPerIsolate: 2 })
  const counter = (key: string) => ({
    key,
    dialect: 'ttn' as const,
    script: 'var calls = 0;\nfunction decodeUplink() { return ++calls }',
  })
  const count = async (key: string) => (await small.run(counter(key), 'decodeUplink', { bytes: [] })).output
  try {
    assert.equal(await count('a'), 1)
    assert.equal(await count('b'), 1)
    assert.equal(await count('a'), 2, 'a is kept and now the most recently used')
    assert.equal(await count('c'), 1)
    assert.equal(small.stats().contexts, 2)
    assert.equal(await count('a'), 3, 'a survived: b was the least recently used')
    assert.equal(await count('b'), 1, 'b was dropped and starts over')
  } finally {
    small.close()
  }
})

test('a syntax error is remembered per version and forgotten with it', async () => {
  const broken = { key: 'broken/1@1', dialect: 'ttn' as const, script: 'function (' }
  await assert.rejects(engine.run(broken, 'decodeUplink', { bytes: [] }), { code: 'syntax' })
  await assert.rejects(
    engine.run({ ...broken, script: 'function decodeUplink() { return 1 }' }, 'decodeUplink', { bytes: [] }),
    {
      code: 'syntax',
    },
  )
  engine.forget('broken/1@')
  const fixed = await engine.run(
    { ...broken, script: 'function decodeUplink() { return 1 }' },
    'decodeUplink',
    { bytes: [] },
  )
  assert.equal(fixed.output, 1)
})

test('close: waiting and later calls reject; the pool reports its isolates', async () => {
  const closing = new ConverterEngine({ isolates: 1 })
  assert.deepEqual(closing.stats(), {
    isolates: 1,
    busyIsolates: 0,
    queued: 0,
    contexts: 0,
    isolatesReplaced: 0,
    catastrophicErrors: 0,
  })
  const slow = uplink('var t = Date.now(); while (Date.now() - t < 50) {} return 1')
  const running = closing.run(slow, 'decodeUplink', { bytes: [] })
  const waiting = closing.run(uplink('return 2'), 'decodeUplink', { bytes: [] })
  assert.equal(closing.stats().busyIsolates + closing.stats().queued > 0, true)
  closing.close()
  await assert.rejects(waiting, /closed/)
  await assert.rejects(running, /closed/)
  await assert.rejects(closing.run(slow, 'decodeUplink', { bytes: [] }), /closed/)
  assert.ok(new ConverterError('script', 'x') instanceof Error)
})
