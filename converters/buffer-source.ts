/**
 * The `Buffer` of the thinger dialect: the real `buffer` npm package (feross/buffer, the browser port of Node's
 * Buffer, with its dependencies base64-js and ieee754) loaded as source into the sandbox, so plugins get Node's
 * semantics without a hand-written imitation. The three CommonJS modules are concatenated under a tiny `require`.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

let cached: string | undefined

/** Reads one module's source next to the module that requires it. */
function moduleSource(from: string, name: string): { path: string; source: string } {
  const path = createRequire(from).resolve(name)
  return { path, source: readFileSync(path, 'utf8') }
}

/**
 * Script text that defines `globalThis.Buffer` (and nothing else) when run in a sandbox context. Read once per
 * process; isolates compile it once each.
 */
export function bufferModuleSource(): string {
  if (cached !== undefined) return cached
  const buffer = moduleSource(import.meta.url, 'buffer/')
  const deps = ['base64-js', 'ieee754'].map((name) => [name, moduleSource(buffer.path, name).source] as const)
  const defs = [...deps, ['buffer', buffer.source] as const]
    .map(([name, source]) => `${JSON.stringify(name)}: function (module, exports, require) {\n${source}\n}`)
    .join(',\n')
  cached = `(function () {
var defs = {
${defs}
};
var cache = {};
function require(name) {
  if (cache[name]) return cache[name].exports;
  if (!defs[name]) throw new Error("Cannot find module '" + name + "'");
  var module = (cache[name] = { exports: {} });
  defs[name].call(module.exports, module, module.exports, require);
  return module.exports;
}
globalThis.Buffer = require('buffer').Buffer;
})();
`
  return cached
}
