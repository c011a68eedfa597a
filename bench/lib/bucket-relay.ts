/**
 * Child process of bench/bucket-read.ts: a relay on 127.0.0.1 (any free port) over the data dir given as the
 * first argument, admin password from TETHER_ADMIN_PASSWORD. Prints `{"url": …}` as one line once it listens,
 * and closes cleanly on SIGTERM, so the bench can open the same LevelDB afterwards.
 */
import { relayLogger, startRelay } from '../../relay/app.ts'

const dataDir = process.argv[2]
if (!dataDir) throw new Error('usage: bucket-relay.ts DATA_DIR')

const relay = await startRelay(
  { host: '127.0.0.1', port: 0, dataDir, adminPassword: process.env.TETHER_ADMIN_PASSWORD },
  { logger: relayLogger('warn', false) },
)
process.stdout.write(`${JSON.stringify({ url: relay.url })}\n`)

const stop = () => {
  relay.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
