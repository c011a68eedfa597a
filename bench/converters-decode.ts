/**
 * bench/converters-decode: uplink decodes per second through the converter engine (isolated-vm sandbox) against
 * the same function called directly in Node (the upper limit), for a typical TTN codec (Dragino LHT65, ES5)
 * and a ThingsBoard decoder (JSON payload with a hex reading). One process; the engine gets BENCH_INFLIGHT
 * concurrent calls, as a busy relay would. "Per core" divides by the CPU time the whole process used (host
 * thread and isolate threads), from process.cpuUsage(). Each figure is the median of BENCH_ROUNDS runs.
 *
 *   node --no-node-snapshot --import tsx bench/converters-decode.ts
 *     (BENCH_SECONDS=3 per run, BENCH_ROUNDS=3, BENCH_INFLIGHT=512, BENCH_ISOLATES=min(4, cores))
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { DIALECTS } from '../converters/dialects/index.ts'
import {
  ConverterEngine,
  type ConverterFunction,
  type ConverterInput,
  type ConverterScript,
} from '../converters/index.ts'
import { envInt, envSeconds } from './lib/env.ts'
import { log } from './lib/log.ts'
import { runBench } from './lib/run-bench.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'converters-decode.json')
const FIXTURES = path.join(ROOT, 'test', 'converters', 'fixtures')
const SECONDS = envSeconds('BENCH_SECONDS', 3)
const ROUNDS = envInt('BENCH_ROUNDS', 3)
const INFLIGHT = envInt('BENCH_INFLIGHT', 512)
const ISOLATES = envInt('BENCH_ISOLATES', Math.min(4, os.availableParallelism()))
const LATENCY_CALLS = 2000
const TARGET_PER_CORE = 20_000
const TARGET_RATIO = 0.25

interface Rate {
  decodesPerSecond: number
  cpuCores: number
  decodesPerCpuSecond: number
}

interface Case {
  name: string
  script: ConverterScript
  fn: ConverterFunction
  inputs: ConverterInput[]
  /** The same function called in Node, on the i-th input. */
  direct: (i: number) => unknown
}

const fixture = (name: string) => readFileSync(path.join(FIXTURES, `${name}.js.txt`), 'utf8')

/** 256 LHT65 frames with changing readings. */
function lht65Frames(): Uint8Array[] {
  return Array.from({ length: 256 }, (_, i) => {
    const f = Buffer.from('CBF60B0D0376010ADD7FFF', 'hex')
    f.writeInt16BE(-2000 + i * 17, 2)
    f.writeUInt16BE(300 + i, 4)
    return new Uint8Array(f)
  })
}

function ttnCase(): Case {
  const source = fixture('ttn-dragino-lht65')
  const frames = lht65Frames()
  const decodeUplink = new Function(`${source}\nreturn decodeUplink`)() as (input: unknown) => unknown
  const recvTime = new Date()
  return {
    name: 'TTN codec (Dragino LHT65, ES5)',
    script: { key: 'bench/lht65@1', dialect: 'ttn', script: source },
    fn: 'decodeUplink',
    inputs: frames.map((bytes) => ({ bytes, fPort: 2, recvTime })),
    // What the sandbox hands the codec: bytes as a plain array, recvTime a Date.
    direct: (i) => decodeUplink({ bytes: Array.from(frames[i & 255]), fPort: 2, recvTime: new Date() }),
  }
}

function thingsboardCase(): Case {
  const body = fixture('thingsboard-decoder-hex')
  const payloads = Array.from({ length: 256 }, (_, i) =>
    Buffer.from(
      JSON.stringify({
        deviceName: `Sensor ${i}`,
        deviceType: 'temperature-sensor',
        ts: 1690000000000 + i,
        value: `0x${(i % 100).toString(16).padStart(2, '0')}${(0x10000 - i * 7).toString(16).slice(-4)}`,
      }),
    ),
  )
  // ThingsBoard's helpers, the very source the sandbox installs, evaluated in Node.
  const helpers: Record<string, unknown> = {}
  new Function('G', DIALECTS.thingsboard.globals)(helpers)
  const Decoder = new Function(
    'decodeToString',
    'decodeToJson',
    `return function Decoder(payload, metadata) {\n${body}\n}`,
  )(helpers.decodeToString, helpers.decodeToJson) as (payload: number[], metadata: object) => unknown
  const metadata = { integrationName: 'bench' }
  return {
    name: 'ThingsBoard decoder (JSON payload, hex reading)',
    script: { key: 'bench/tb-hex@1', dialect: 'thingsboard', script: body },
    fn: 'Decoder',
    inputs: payloads.map((p) => ({ payload: new Uint8Array(p), metadata })),
    direct: (i) => Decoder(Array.from(payloads[i & 255]), metadata),
  }
}

function rate(count: number, seconds: number, cpu: NodeJS.CpuUsage): Rate {
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  return {
    decodesPerSecond: Math.round(count / seconds),
    cpuCores: Number((cpuSeconds / seconds).toFixed(2)),
    decodesPerCpuSecond: Math.round(count / cpuSeconds),
  }
}

/** Decodes through the engine for `seconds`, INFLIGHT calls at a time. */
async function engineRun(engine: ConverterEngine, c: Case, seconds: number): Promise<Rate> {
  let count = 0
  let stop = false
  const worker = async (w: number) => {
    for (let i = w; !stop; i += INFLIGHT) {
      await engine.run(c.script, c.fn, c.inputs[i & 255])
      count++
    }
  }
  const timer = setTimeout(() => {
    stop = true
  }, seconds * 1000)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: INFLIGHT }, (_, w) => worker(w)))
  const elapsed = (performance.now() - t0) / 1000
  clearTimeout(timer)
  return rate(count, elapsed, process.cpuUsage(cpu0))
}

/** Calls the function directly for `seconds`. */
function directRun(c: Case, seconds: number): Rate {
  let count = 0
  let sink: unknown
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) sink = c.direct(count + i)
    count += 1000
  }
  if (sink === undefined) throw new Error('the direct call returned nothing')
  return rate(count, (performance.now() - t0) / 1000, process.cpuUsage(cpu0))
}

/** One call at a time: the round trip into the sandbox and back, in µs. */
async function latency(engine: ConverterEngine, c: Case): Promise<{ p50Us: number; p99Us: number }> {
  const samples: number[] = []
  for (let i = 0; i < LATENCY_CALLS; i++) {
    const t = performance.now()
    await engine.run(c.script, c.fn, c.inputs[i & 255])
    samples.push((performance.now() - t) * 1000)
  }
  samples.sort((a, b) => a - b)
  const at = (q: number) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))])
  return { p50Us: at(0.5), p99Us: at(0.99) }
}

function median(rates: Rate[]): Rate {
  const sorted = [...rates].sort((a, b) => a.decodesPerSecond - b.decodesPerSecond)
  return sorted[Math.floor(sorted.length / 2)]
}

async function measure(c: Case) {
  const engine = new ConverterEngine({ isolates: ISOLATES })
  try {
    const check = await engine.run(c.script, c.fn, c.inputs[0])
    if (JSON.stringify(check.output) !== JSON.stringify(c.direct(0))) {
      throw new Error(`${c.name}: the engine and the direct call disagree`)
    }
    log(`${c.name}: warm-up`)
    await engineRun(engine, c, 1)
    directRun(c, 1)
    const engineRates: Rate[] = []
    const directRates: Rate[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      engineRates.push(await engineRun(engine, c, SECONDS))
      directRates.push(directRun(c, SECONDS))
      log(
        `${c.name}: round ${round}: engine ${engineRates.at(-1)?.decodesPerSecond}/s, direct ${directRates.at(-1)?.decodesPerSecond}/s`,
      )
    }
    const viaEngine = median(engineRates)
    const direct = median(directRates)
    return {
      name: c.name,
      engine: viaEngine,
      direct,
      latency: await latency(engine, c),
      ratioToDirect: Number((viaEngine.decodesPerSecond / direct.decodesPerSecond).toFixed(3)),
      ratioToDirectPerCpu: Number((viaEngine.decodesPerCpuSecond / direct.decodesPerCpuSecond).toFixed(3)),
      rounds: { engine: engineRates, direct: directRates },
    }
  } finally {
    engine.close()
  }
}

async function main(): Promise<number> {
  const results = []
  for (const c of [ttnCase(), thingsboardCase()]) results.push(await measure(c))
  const pad = (s: string | number, n: number) => String(s).padStart(n)
  const lines = [
    `${'case'.padEnd(48)}${pad('engine/s', 10)}${pad('cores', 7)}${pad('per core', 10)}${pad('direct/s', 11)}${pad('ratio', 7)}${pad('p50 µs', 8)}${pad('p99 µs', 8)}`,
    ...results.map(
      (r) =>
        `${r.name.padEnd(48)}${pad(r.engine.decodesPerSecond, 10)}${pad(r.engine.cpuCores, 7)}${pad(r.engine.decodesPerCpuSecond, 10)}${pad(r.direct.decodesPerSecond, 11)}${pad(r.ratioToDirect.toFixed(2), 7)}${pad(r.latency.p50Us, 8)}${pad(r.latency.p99Us, 8)}`,
    ),
    '',
    ...results.map(
      (r) =>
        `${r.name}: per core ${r.engine.decodesPerCpuSecond}/s (target ≥ ${TARGET_PER_CORE}: ${r.engine.decodesPerCpuSecond >= TARGET_PER_CORE ? 'met' : 'missed'}), ` +
        `${(r.ratioToDirect * 100).toFixed(0)} % of direct (target ≥ ${TARGET_RATIO * 100} %: ${r.ratioToDirect >= TARGET_RATIO ? 'met' : 'missed'})`,
    ),
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify(
      {
        command: 'node --no-node-snapshot --import tsx bench/converters-decode.ts',
        date: new Date().toISOString(),
        machine: { cpu: os.cpus()[0]?.model, nproc: os.availableParallelism(), node: process.version },
        settings: { seconds: SECONDS, rounds: ROUNDS, inflight: INFLIGHT, isolates: ISOLATES },
        results,
        targets: { decodesPerCpuSecond: TARGET_PER_CORE, ratioToDirect: TARGET_RATIO },
      },
      null,
      2,
    )}\n`,
  )
  log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`)
  return 0
}

await runBench(main, envInt('BENCH_TIMEOUT', 600))
