// Adds lock entries for optional platform packages the registry mirror does not serve, so `npm ci` accepts the lock.
import { readFileSync, writeFileSync } from 'node:fs'

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'))
const pkgs = lock.packages
let added = 0
for (const [path, entry] of Object.entries(pkgs)) {
  for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`
    if (pkgs[key] || pkgs[`${path}/node_modules/${name}`]) continue
    const os = /darwin/.test(name)
      ? ['darwin']
      : /win32/.test(name)
        ? ['win32']
        : /android/.test(name)
          ? ['android']
          : /linux/.test(name)
            ? ['linux']
            : undefined
    const cpu = /arm64/.test(name)
      ? ['arm64']
      : /x64/.test(name)
        ? ['x64']
        : /arm\b|-arm$/.test(name)
          ? ['arm']
          : undefined
    pkgs[key] = {
      version: range.replace(/^[\^~]/, ''),
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      ...(os ? { os } : {}),
      ...(cpu ? { cpu } : {}),
      ...(/musl/.test(name) ? { libc: ['musl'] } : {}),
    }
    added++
  }
}
lock.packages = Object.fromEntries(
  Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
)
writeFileSync('package-lock.json', `${JSON.stringify(lock, null, 2)}\n`)
console.log(`added ${added} placeholder entries`)
