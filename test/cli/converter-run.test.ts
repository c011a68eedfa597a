/** `tether converter run` as a user runs it: a real child process on fixture scripts. */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { fixturePath } from '../converters/fixtures/scripts.ts'
import { tether } from './run-tether.ts'

let dir = ''
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tether-converter-cli-'))
})
after(() => rm(dir, { recursive: true, force: true }))

/** Writes a script (or payload) into the temp dir and returns its path. */
async function file(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, content)
  return path
}

test('ttn decodeUplink (the default function) on --bytes prints the output as JSON', async () => {
  const r = await tether([
    'converter',
    'run',
    '--dialect',
    'ttn',
    '--file',
    fixturePath('ttn-dragino-lht65'),
    '--bytes',
    'CB F6 0B 0D 03 76 01 0A DD 7F FF',
    '--fport',
    '2',
  ])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), {
    data: {
      BatV: 3.062,
      Bat_status: 'Good',
      TempC_SHT: 28.29,
      Hum_SHT: 88.6,
      Ext_sensor: 'Temperature Sensor',
      TempC_DS: 27.81,
    },
    warnings: [],
    errors: [],
  })
  assert.equal(r.stderr, '')
})

test('thingsboard Decoder on --payload-file with --metadata; console lines go to stderr', async () => {
  const script = await file(
    'decoder.js',
    "console.log('bytes', payload.length);\nconsole.warn('device', metadata.deviceName);\nvar d = decodeToJson(payload);\nreturn { deviceName: metadata.deviceName, telemetry: d };",
  )
  const payload = await file('payload.json', '{"temperature":21.5}')
  const r = await tether([
    'converter',
    'run',
    '--dialect',
    'thingsboard',
    '--file',
    script,
    '--payload-file',
    payload,
    '--metadata',
    '{"deviceName":"Sensor A"}',
  ])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { deviceName: 'Sensor A', telemetry: { temperature: 21.5 } })
  assert.equal(r.stderr, '[log] bytes 20\n[warn] device Sensor A\n')
})

test('thinger downlink with --data: a Buffer result is printed as an array of numbers', async () => {
  const r = await tether([
    'converter',
    'run',
    '--dialect',
    'thinger',
    '--file',
    fixturePath('thinger-sensor-plugin'),
    '--function',
    'downlink',
    '--data',
    '{"interval":600,"offset":-2,"flags":129,"name":"z"}',
  ])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '[165, 1, 2, 88, 254, 255, 129, 126, 122]\n')
})

test('ttn encodeDownlink with --data and --fport', async () => {
  const r = await tether([
    'converter',
    'run',
    '--dialect',
    'ttn',
    '--file',
    fixturePath('ttn-milesight-em300-es2015'),
    '--function',
    'encodeDownlink',
    '--data',
    '{"interval":1200}',
    '--fport',
    '85',
  ])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { bytes: [255, 3, 176, 4], fPort: 85 })
})

test('a script that throws: exit 1, its logs, then the code and message on stderr', async () => {
  const script = await file(
    'throws.js',
    "function decodeUplink(input) {\n  console.log('port', input.fPort);\n  throw new Error('bad frame');\n}",
  )
  const r = await tether(['converter', 'run', '--dialect', 'ttn', '--file', script, '--base64', 'AQI='])
  assert.equal(r.code, 1)
  assert.equal(r.stdout, '')
  assert.equal(r.stderr, '[log] port 1\ntether: converter script: Error: bad frame (line 3)\n')
})

test('an endless loop: stopped at --timeout-ms, exit 1 with the timeout code', async () => {
  const script = await file('loop.js', 'function decodeUplink(input) { while (true) {} }')
  const started = performance.now()
  const r = await tether(['converter', 'run', '--dialect', 'ttn', '--file', script, '--timeout-ms', '100'])
  assert.equal(r.code, 1)
  assert.equal(r.stderr, 'tether: converter timeout: the script ran over the 100 ms time limit\n')
  assert.ok(performance.now() - started < 10_000)
})
