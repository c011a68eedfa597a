/**
 * PostgreSQL and Redis clients through tcp-iotmp, against throw-away servers.
 * A missing tool skips the test locally and fails it in CI (CI=true), naming the Debian package.
 */
import assert from 'node:assert/strict'
import { chown } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { createTcpProxy, eventually, freePort, startTunnel } from '../harness.ts'
import {
  findTool,
  isRoot,
  ok,
  proxyStatus,
  ready,
  requireTools,
  run,
  sandbox,
  TIMEOUT,
  userInfoOf,
} from './tools.ts'

test('PostgreSQL: psql runs queries through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    psql: 'postgresql-client',
    pg_isready: 'postgresql-client',
    initdb: 'postgresql',
    postgres: 'postgresql',
  })
  if (!tools) return
  const box = await sandbox(t, 'pg')
  // initdb and postgres refuse to run as root: run them as the `postgres` OS user in a dir it owns.
  const asServerUser = (command: string, args: string[]): [string, string[]] => {
    if (!isRoot) return [command, args]
    const setpriv = findTool('setpriv')
    assert.ok(setpriv, 'setpriv (util-linux) is needed to run PostgreSQL as the postgres user')
    return [setpriv, ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', command, ...args]]
  }
  if (isRoot) {
    const { uid, gid } = userInfoOf('postgres')
    await chown(box.dir, uid, gid)
  }
  const data = join(box.dir, 'data')
  const init = await run(
    ...asServerUser(tools.initdb!, ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync']),
    30_000,
  )
  ok(init, 'initdb')

  const pgPort = await freePort()
  const server = box.spawn(
    ...asServerUser(tools.postgres!, [
      '-D',
      data,
      '-k',
      box.dir,
      '-p',
      String(pgPort),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
    ]),
    'SIGINT', // fast shutdown
  )
  const isReady = async (port: number) =>
    (await run(tools.pg_isready!, ['-h', '127.0.0.1', '-p', String(port), '-t', '2'])).code === 0
  await ready(server, 'postgres', () => isReady(pgPort))

  const { relay } = await startTunnel(t, [`127.0.0.1:${pgPort}`])
  const port = await createTcpProxy(relay, 'pg', { device: 'gw', address: '127.0.0.1', port: pgPort })
  assert.equal(await isReady(port), true, 'pg_isready through the proxy')
  const out = ok(
    await run(tools.psql!, [
      '-X',
      '-At',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      'create table t(x int); insert into t values (1),(2); select sum(x) from t',
    ]),
    'psql',
  )
  assert.equal(out.trim().split('\n').at(-1), '3', out)
  const status = await proxyStatus(relay, 'pg')
  assert.ok(status.total_connections >= 2, JSON.stringify(status))
  assert.ok(status.rx_bytes > 0 && status.tx_bytes > 0, JSON.stringify(status))
})

test('Redis: redis-cli and redis-benchmark through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    'redis-server': 'redis-server',
    'redis-cli': 'redis-tools',
    'redis-benchmark': 'redis-tools',
  })
  if (!tools) return
  const box = await sandbox(t, 'redis')
  const redisPort = await freePort()
  const server = box.spawn(tools['redis-server']!, [
    '--port',
    String(redisPort),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    box.dir,
  ])
  const cli = (port: number, ...args: string[]) =>
    run(tools['redis-cli']!, ['-h', '127.0.0.1', '-p', String(port), ...args])
  await ready(server, 'redis-server', async () => (await cli(redisPort, 'ping')).stdout.trim() === 'PONG')

  const { relay } = await startTunnel(t, [`127.0.0.1:${redisPort}`])
  const port = await createTcpProxy(relay, 'redis', { device: 'gw', address: '127.0.0.1', port: redisPort })
  assert.equal(ok(await cli(port, 'set', 'k', 'v'), 'redis-cli set').trim(), 'OK')
  assert.equal(ok(await cli(port, 'get', 'k'), 'redis-cli get').trim(), 'v')
  // The value really landed in the server behind the agent.
  assert.equal(ok(await cli(redisPort, 'get', 'k'), 'redis-cli get (direct)').trim(), 'v')

  const bench = await run(
    tools['redis-benchmark']!,
    ['-h', '127.0.0.1', '-p', String(port), '-q', '-n', '20000', '-t', 'set,get'],
    40_000,
  )
  const out = ok(bench, 'redis-benchmark')
  for (const op of ['SET', 'GET']) {
    const m = new RegExp(`${op}: ([\\d.]+) requests per second`).exec(out)
    assert.ok(m, `no ${op} result in redis-benchmark output:\n${out}`)
    assert.ok(Number(m[1]) > 0, `${op}: ${m[1]} requests per second`)
  }
  await eventually(async () => (await proxyStatus(relay, 'redis')).active_connections === 0, 5000)
})
