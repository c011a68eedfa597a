/// <reference lib="dom" />
/** nginx (Debian nginx-light) as the device's web server, opened in the console iframe in chromium. */
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { freePort } from '../harness.ts'
import { accepts, isRoot, ready, requireTool, sandbox } from '../real-clients/tools.ts'
import { consolePage, launchBrowser, portalFrame, screenshot } from './browser.ts'
import { startPortal } from './portal-harness.ts'

/** Starts nginx serving a small site from a sandbox on 127.0.0.1; returns its port. */
async function startNginx(t: Parameters<typeof sandbox>[0], nginx: string): Promise<number> {
  const box = await sandbox(t, 'nginx')
  const www = join(box.dir, 'www')
  await mkdir(join(www, 'assets'), { recursive: true })
  await mkdir(join(www, 'docs'), { recursive: true })
  await mkdir(join(box.dir, 'tmp'))
  await writeFile(
    join(www, 'index.html'),
    '<!doctype html><link rel="stylesheet" href="/assets/site.css"><h1 id="t">nginx device</h1><a id="docs" href="/docs">Docs</a>',
  )
  await writeFile(join(www, 'assets', 'site.css'), 'h1 { color: rgb(0, 128, 0); }')
  await writeFile(join(www, 'docs', 'index.html'), '<!doctype html><h1 id="d">Device docs</h1>')
  const port = await freePort()
  const tmp = join(box.dir, 'tmp')
  const conf = `${isRoot ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${box.dir}/nginx.pid;
error_log ${box.dir}/error.log warn;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
  types { text/html html; text/css css; }
  server {
    listen 127.0.0.1:${port};
    server_name device.lan;
    root ${www};
    add_header X-Frame-Options SAMEORIGIN always;
  }
}
`
  await writeFile(join(box.dir, 'nginx.conf'), conf)
  const server = box.spawn(nginx, ['-c', join(box.dir, 'nginx.conf'), '-p', box.dir], 'SIGQUIT')
  await ready(server, 'nginx', () => accepts(port))
  return port
}

test('an nginx-served device site works in the portal iframe, its redirects included', {
  timeout: 60_000,
}, async (t) => {
  const nginx = requireTool(t, 'nginx', 'nginx-light')
  if (!nginx) return
  const browser = await launchBrowser(t)
  if (!browser) return
  const port = await startNginx(t, nginx)
  const p = await startPortal(t, { devicePort: port })
  const origin = `http://${p.host}`
  const page = await consolePage(browser, p.relay.token)
  await page.goto(`${p.relay.relay.url}/console/devices/gw/portal/web`)
  const frame = await portalFrame(page, origin)
  await frame.waitForSelector('#t')
  assert.equal(
    await frame.evaluate(() => getComputedStyle(document.querySelector('h1') as Element).color),
    'rgb(0, 128, 0)',
  )
  // nginx answers /docs with 301 Location: http://127.0.0.1:<port>/docs/ (its own address): it must land in the portal.
  await frame.click('#docs')
  await frame.waitForSelector('#d')
  assert.equal(frame.url(), `${origin}/docs/`)
  await screenshot(page, 'portal-nginx')
})
