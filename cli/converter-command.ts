/**
 * `tether converter run`: runs a converter script on a sample in the same sandboxed engine as the relay and
 * prints what it returned as JSON on stdout. Byte arrays in the output (Buffer, Uint8Array) are printed as
 * arrays of numbers, the form TTN codecs use for `bytes`. The script's console lines go to stderr as
 * `[level] message`. A failing script exits 1 with `tether: converter <code>: <message>` on stderr.
 */
import { readFileSync } from 'node:fs'
import { Command, InvalidArgumentError, Option } from 'commander'
import {
  ConverterEngine,
  ConverterError,
  type ConverterFunction,
  type ConverterInput,
  type ConverterLog,
  type Dialect,
  defaultFunction,
  functionsOf,
} from '../converters/index.ts'

interface RunOptions {
  dialect: Dialect
  file: string
  function?: string
  fport?: number
  bytes?: string
  base64?: string
  payloadFile?: string
  data?: unknown
  metadata?: Record<string, unknown>
  msgType?: string
  timeoutMs: number
  memoryMb: number
}

/** argParser: a positive integer. */
function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number')
  return n
}

/** argParser: JSON text. */
function json(value: string): unknown {
  try {
    return JSON.parse(value)
  } catch {
    throw new InvalidArgumentError('must be JSON')
  }
}

/** argParser: a hex string (spaces and a 0x prefix allowed). */
function hexBytes(value: string): string {
  const hex = value.replace(/\s+/g, '').replace(/^0x/i, '')
  if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new InvalidArgumentError('must be hex, two digits per byte')
  return hex
}

/** The sample payload bytes: --bytes, --base64 or --payload-file, else none. */
function payloadBytes(o: RunOptions): Uint8Array {
  if (o.bytes !== undefined) return new Uint8Array(Buffer.from(o.bytes, 'hex'))
  if (o.base64 !== undefined) return new Uint8Array(Buffer.from(o.base64, 'base64'))
  if (o.payloadFile !== undefined) return new Uint8Array(readFileSync(o.payloadFile))
  return new Uint8Array(0)
}

/** The engine input for `fn` from the flags. */
function inputFor(fn: ConverterFunction, o: RunOptions): ConverterInput {
  const metadata = o.metadata ?? {}
  switch (fn) {
    case 'Decoder':
      return { payload: payloadBytes(o), metadata }
    case 'Encoder':
      return { msg: o.data ?? {}, metadata, msgType: o.msgType ?? '', integrationMetadata: {} }
    case 'decodeUplink':
      return { bytes: payloadBytes(o), fPort: o.fport ?? 1, recvTime: new Date() }
    case 'decodeDownlink':
      return { bytes: payloadBytes(o), fPort: o.fport ?? 1 }
    case 'encodeDownlink':
      return { data: o.data ?? {}, ...(o.fport === undefined ? {} : { fPort: o.fport }) }
    case 'uplink':
    case 'downlink':
      return { payload: o.data !== undefined ? o.data : payloadBytes(o) }
  }
}

/** JSON.stringify replacer: byte arrays as arrays of numbers. */
function bytesAsNumbers(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Array.from(value) : value
}

/** Pretty JSON, with arrays of numbers (bytes) kept on one line: JSON text has no raw newline inside strings. */
function formatOutput(value: unknown): string {
  return JSON.stringify(value ?? null, bytesAsNumbers, 2).replace(
    /\[\n\s*(-?[\d.e+-]+(?:,\n\s*-?[\d.e+-]+)*)\n\s*\]/g,
    (_, items: string) => `[${items.split(/,\n\s*/).join(', ')}]`,
  )
}

function printLogs(logs: ConverterLog[]): void {
  for (const { level, message } of logs) process.stderr.write(`[${level}] ${message}\n`)
}

async function run(o: RunOptions): Promise<void> {
  const known = functionsOf(o.dialect)
  const fn = (o.function ?? defaultFunction(o.dialect, 'uplink')) as ConverterFunction
  if (!known.includes(fn)) throw new Error(`--function: ${o.dialect} converters have ${known.join(', ')}`)
  const script = { key: `cli:${o.file}`, dialect: o.dialect, script: readFileSync(o.file, 'utf8') }
  const engine = new ConverterEngine({ isolates: 1, timeoutMs: o.timeoutMs, memoryLimitMb: o.memoryMb })
  try {
    const result = await engine.run(script, fn, inputFor(fn, o))
    printLogs(result.logs)
    process.stdout.write(`${formatOutput(result.output)}\n`)
  } catch (err) {
    if (!(err instanceof ConverterError)) throw err
    printLogs(err.logs)
    throw new Error(`converter ${err.code}: ${err.message}`)
  } finally {
    engine.close()
  }
}

export function converterCommand(): Command {
  const cmd = new Command('converter').description(
    'converter scripts (ThingsBoard, TTN codecs, Thinger plugins)',
  )
  const sources = ['bytes', 'base64', 'payloadFile']
  cmd.addCommand(
    new Command('run')
      .description(
        'run a converter on a sample and print its output as JSON (byte arrays as arrays of numbers); ' +
          'console lines go to stderr',
      )
      .addOption(
        new Option('--dialect <dialect>', 'script convention')
          .choices(['thingsboard', 'ttn', 'thinger'])
          .makeOptionMandatory(),
      )
      .addOption(new Option('--file <script>', 'the converter script').makeOptionMandatory())
      .option('--function <name>', "entry point (default: the dialect's uplink function)")
      .option('--fport <n>', 'LoRaWAN port (ttn; default 1)', positiveInt)
      .addOption(
        new Option('--bytes <hex>', 'payload bytes as hex')
          .argParser(hexBytes)
          .conflicts(['base64', 'payloadFile']),
      )
      .addOption(new Option('--base64 <b64>', 'payload bytes as base64').conflicts(['bytes', 'payloadFile']))
      .addOption(
        new Option('--payload-file <file>', 'payload bytes read from a file').conflicts(
          sources.filter((s) => s !== 'payloadFile'),
        ),
      )
      .option('--data <json>', 'msg (Encoder), data (encodeDownlink) or payload (thinger) as JSON', json)
      .option('--metadata <json>', 'metadata object (thingsboard)', json)
      .option('--msg-type <type>', 'message type (thingsboard Encoder)')
      .option('--timeout-ms <n>', 'time limit of the call', positiveInt, 200)
      .option('--memory-mb <n>', 'memory limit of the sandbox', positiveInt, 32)
      .action((o: RunOptions) => run(o)),
  )
  return cmd
}
