/** Debian chromium driven by playwright-core, for the portal tests; screenshots go to test-artifacts/. */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { type Browser, chromium, type Frame, type Page } from 'playwright-core'
import { requireTool } from '../real-clients/tools.ts'

export const ARTIFACTS =
  process.env.TETHER_ARTIFACTS ?? join(import.meta.dirname, '..', '..', '..', 'test-artifacts')

/** A headless chromium closed after the test, or undefined when skipped (outside CI, chromium missing). */
export async function launchBrowser(t: TestContext): Promise<Browser | undefined> {
  const executablePath = requireTool(t, 'chromium', 'chromium')
  if (!executablePath) return undefined
  const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  return browser
}

/** A page whose session storage already holds the console's access token. */
export async function consolePage(browser: Browser, token: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  await context.addInitScript((value) => sessionStorage.setItem('tether.token', value), token)
  return context.newPage()
}

/** The portal iframe of the console page, once it shows a document from the portal origin. */
export async function portalFrame(page: Page, origin: string | RegExp): Promise<Frame> {
  const element = await page.waitForSelector('#portal:not([hidden])')
  const frame = await element.contentFrame()
  if (!frame) throw new Error('the portal iframe has no frame')
  await frame.waitForURL((url) =>
    typeof origin === 'string' ? url.origin === origin : origin.test(url.href),
  )
  return frame
}

/** Saves a full-page screenshot as a test artefact; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true })
  const path = join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}
