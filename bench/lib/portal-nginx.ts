/**
 * nginx for the portal bench: the "device web server" (a static page on loopback) and the DIY reverse proxy
 * in front of an `ssh -R` forward. Each is its own nginx master (`daemon off`, a child of the bench) with its
 * own config, pid file, logs and temp paths in a temp dir.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { descendantsOf } from './portal-procs.ts'
import { freePort, tryConnect } from './ports.ts'
import { isRunning, makeTempDir, spawnChild, stopChildren, tailOf } from './processes.ts'
import { waitFor } from './wait.ts'

export interface NginxHandle {
  port: number
  /** The master process. */
  pid: number
  /** The worker processes (they do the serving). */
  workerPids: number[]
  configFile: string
  errorLog: string
  stop: () => Promise<void>
}

export interface DevicePage {
  /** Path of the page on the device (`/`). */
  path: string
  bytes: number
}

/** A small, plausible device status page of about 2.8 KiB (deterministic). */
export function devicePageHtml(): string {
  const rows: string[] = []
  for (let i = 1; rows.join('').length < 2300; i++) {
    const value = ((i * 37) % 1000) / 10
    rows.push(
      `      <tr><td>sensor-${String(i).padStart(2, '0')}</td><td>${value.toFixed(1)}</td><td>ok</td></tr>\n`,
    )
  }
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Gateway status</title>
    <style>
      body { font-family: sans-serif; margin: 2em; color: #222; }
      table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2em .6em; }
    </style>
  </head>
  <body>
    <h1>Gateway status</h1>
    <p>Firmware 4.2.1, uptime 12 d 04:17, 3 interfaces up.</p>
    <table>
      <tr><th>sensor</th><th>value</th><th>state</th></tr>
${rows.join('')}    </table>
  </body>
</html>
`
}

/** Common head of both configs: no daemon, everything under `dir`, one event loop per worker. */
function configHead(dir: string, workers: number): string {
  const tmp = path.join(dir, 'tmp')
  mkdirSync(tmp, { recursive: true })
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes ${workers};
daemon off;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
  types { text/html html; }
  default_type application/octet-stream;
  sendfile on;
`
}

async function startNginx(
  name: string,
  nginx: string,
  dir: string,
  port: number,
  config: string,
): Promise<NginxHandle> {
  const configFile = path.join(dir, 'nginx.conf')
  const errorLog = path.join(dir, 'error.log')
  writeFileSync(configFile, config)
  const logFile = path.join(dir, 'nginx.out')
  // -e: the error log before the config is read (else nginx opens /var/log/nginx/error.log first).
  const proc = spawnChild(name, nginx, ['-c', configFile, '-p', dir, '-e', errorLog], { logFile })
  await waitFor(`${name} on :${port}`, async () => {
    if (!isRunning(proc))
      throw new Error(`${name} exited: ${tailOf(logFile)}\n--- error.log ---\n${tailOf(errorLog)}`)
    return tryConnect(port)
  })
  const workerPids = descendantsOf(proc.pid!).map((p) => p.pid)
  return { port, pid: proc.pid!, workerPids, configFile, errorLog, stop: () => stopChildren([proc]) }
}

/**
 * The device web server: nginx serving `devicePageHtml()` as `/` on 127.0.0.1. Keep-alive as nginx ships it
 * (`keepalive_requests 1000`, 75 s idle): a device is not tuned for the bench, and every path meets the same.
 */
export async function startDeviceNginx(
  nginx: string,
  workers: number,
): Promise<NginxHandle & { page: DevicePage }> {
  const dir = makeTempDir('nginx-device')
  const www = path.join(dir, 'www')
  mkdirSync(www)
  const html = devicePageHtml()
  writeFileSync(path.join(www, 'index.html'), html)
  const port = await freePort()
  const config = `${configHead(dir, workers)}  server {
    listen 127.0.0.1:${port};
    server_name device.lan;
    root ${www};
    index index.html;
  }
}
`
  const handle = await startNginx('nginx-device', nginx, dir, port, config)
  return { ...handle, page: { path: '/', bytes: Buffer.byteLength(html) } }
}

/**
 * The DIY portal: nginx reverse proxy to `upstreamPort` (the `ssh -R` forward) with upstream keep-alive
 * (`proxy_http_version 1.1`, empty Connection, a pool of idle upstream connections), setting the
 * X-Forwarded-* headers a portal sets too. Clients may send up to 100,000 requests per connection, so the
 * proxy is not slowed by reconnecting clients.
 */
export async function startProxyNginx(
  nginx: string,
  upstreamPort: number,
  workers: number,
  upstreamKeepalive: number,
): Promise<NginxHandle> {
  const dir = makeTempDir('nginx-proxy')
  const port = await freePort()
  const config = `${configHead(dir, workers)}  upstream device {
    server 127.0.0.1:${upstreamPort};
    keepalive ${upstreamKeepalive};
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 100000;
    location / {
      proxy_pass http://device;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`
  return startNginx('nginx-proxy', nginx, dir, port, config)
}
