/** The `tether` CLI as a user runs it: a real child process against a real relay. */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { agentConfigFrom } from '../../cli/agent-command.ts'
import { connect, echoServer, readAll, startTestAgent, startTestRelay } from '../e2e/harness.ts'
import { CLI, tether } from './run-tether.ts'

test('every subcommand has --help', async () => {
  const commands = [
    [],
    ['relay'],
    ['agent'],
    ['login'],
    ['device', 'add'],
    ['device', 'list'],
    ['device', 'rm'],
  ]
  commands.push(['proxy', 'add'], ['proxy', 'list'], ['proxy', 'rm'], ['proxy', 'portal'], ['demo'])
  commands.push(['user', 'add'], ['user', 'list'])
  const results = await Promise.all(commands.map((c) => tether([...c, '--help'])))
  results.forEach((r, i) => {
    assert.equal(r.code, 0, `tether ${commands[i]!.join(' ')} --help exited ${r.code}`)
    assert.match(r.stdout, /Usage: tether/)
  })
})

test('login, device add/list/rm and proxy add/list/rm against a running relay', async (t) => {
  const relay = await startTestRelay(t)
  const env = { TETHER_RELAY_URL: relay.relay.url, TETHER_TOKEN: '' }
  const login = await tether(['login', '-u', 'admin', '-p', 'admin-password-for-tests'], env)
  assert.equal(login.code, 0, login.stderr)
  env.TETHER_TOKEN = login.stdout.trim()

  const added = await tether(['device', 'add', 'gw1', '--name', 'Gateway 1'], env)
  assert.equal(added.code, 0, added.stderr)
  const credential = /credential: (\S+)/.exec(added.stdout)?.[1]
  assert.ok(credential, added.stdout)

  const target = await echoServer(t)
  const { agent } = await startTestAgent(t, {
    relay: relay.relay.iotmpUrl,
    device: 'gw1',
    credential,
    allow: [`127.0.0.1:${target}`],
  })
  await agent.connected()
  const listed = await tether(['device', 'list'], env)
  assert.match(listed.stdout, /gw1\s+agent\s+Gateway 1\s+true\s+yes/)

  const proxy = await tether(
    [
      'proxy',
      'add',
      'echo',
      '--device',
      'admin/gw1',
      '--target',
      `127.0.0.1:${target}`,
      '--port',
      '0',
      '--bind',
      '127.0.0.1',
    ],
    env,
  )
  assert.equal(proxy.code, 0, proxy.stderr)
  const port = Number(/listening on port (\d+)/.exec(proxy.stdout)?.[1])
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.end('via the cli')
  assert.equal((await reply).data.toString(), 'via the cli')
  assert.match(
    (await tether(['proxy', 'list'], env)).stdout,
    new RegExp(`echo\\s+tcp-iotmp\\s+${port}\\s+admin/gw1 127\\.0\\.0\\.1:${target}\\s+true\\s+listening`),
  )

  // A target outside the agent's allowlist: the refusal shows in the list's last-error column.
  const refused = await tether(
    [
      'proxy',
      'add',
      'denied',
      '--device',
      'admin/gw1',
      '--target',
      '127.0.0.1:9',
      '--port',
      '0',
      '--bind',
      '127.0.0.1',
    ],
    env,
  )
  const deniedPort = Number(/listening on port (\d+)/.exec(refused.stdout)?.[1])
  const denied = await connect(deniedPort)
  assert.equal((await readAll(denied)).data.length, 0)
  assert.match(
    (await tether(['proxy', 'list'], env)).stdout,
    /denied\s+tcp-iotmp.*listening\s+0\s+1\s+\S+.*127\.0\.0\.1:9 is not in the agent's allowlist/,
  )

  assert.equal((await tether(['proxy', 'rm', 'echo', 'denied'], env)).code, 0)
  const missing = await tether(['proxy', 'rm', 'echo', 'nosuch'], env)
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /proxy echo not found; proxy nosuch not found/)
  assert.equal((await tether(['device', 'rm', 'gw1'], env)).code, 0)
  const gone = await tether(['device', 'rm', 'gw1'], env)
  assert.equal(gone.code, 1)
  assert.match(gone.stderr, /404 device admin\/gw1 not found/)
})

test('admin commands without a token fail with the API message', async (t) => {
  const relay = await startTestRelay(t)
  const r = await tether(['device', 'list'], { TETHER_RELAY_URL: relay.relay.url, TETHER_TOKEN: '' })
  assert.equal(r.code, 1)
  assert.match(r.stderr, /401 missing bearer token/)
})

test('agent config: file, then flags on top', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-cli-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'agent.json')
  await writeFile(
    file,
    JSON.stringify({ relay: 'wss://a.example', user: 'u', device: 'd', credential: 'c', keepAliveSec: 30 }),
  )
  const config = agentConfigFrom({ config: file, device: 'other', keepalive: '45', allow: ['10.0.0.0/8:80'] })
  assert.deepEqual(config, {
    relay: 'wss://a.example',
    user: 'u',
    device: 'other',
    credential: 'c',
    keepAliveSec: 45,
    allow: ['10.0.0.0/8:80'],
  })
})

test('agent with an invalid config exits with a message naming the key', async () => {
  const r = await tether([
    'agent',
    '--relay',
    'http://nope',
    '--user',
    'u',
    '--device',
    'd',
    '--credential',
    'c',
  ])
  assert.equal(r.code, 1)
  assert.match(r.stderr, /invalid agent configuration:\s+\/relay must match pattern/)
})

test('relay --config: the file sets every key, plugins included; a flag overrides it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-cli-relay-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'relay.json')
  const config = {
    host: '127.0.0.1',
    port: 1, // overridden below: a flag wins
    dataDir: join(dir, 'data'),
    adminPassword: 'config-file-password',
    plugins: { nodered: { address: '127.0.0.1' } },
  }
  await writeFile(file, JSON.stringify(config))
  const child = spawn(
    process.execPath,
    ['--no-node-snapshot', CLI, 'relay', '--config', file, '--port', '0'],
    {
      env: { ...process.env, TETHER_LOG_LEVEL: 'info', TETHER_ADMIN_PASSWORD: '' },
    },
  )
  t.after(() => child.kill('SIGKILL'))
  const url = await new Promise<string>((resolve, reject) => {
    let output = ''
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const match = /relay ready: API (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match) resolve(match[1]!)
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}:\n${output}`)))
  })
  // The admin password came from the file; a plugin target validates only because the file named it.
  const login = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'password', username: 'admin', password: config.adminPassword }),
  })
  assert.equal(login.status, 200)
  const { access_token } = (await login.json()) as { access_token: string }
  const created = await fetch(`${url}/v1/server/proxies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      id: 'red',
      protocol: 'tcp',
      enabled: false,
      source: { port: 0 },
      target: { type: 'plugin', plugin: 'nodered', port: 1880 },
    }),
  })
  assert.equal(created.status, 201, await created.text())
})
