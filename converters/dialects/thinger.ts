/**
 * Thinger.io plugin modules: `module.exports.uplink = function (payload) {…}` and `.downlink` (also
 * `module.exports = {uplink, downlink}` and `exports.uplink = …`), run as a CommonJS module without `require`,
 * with Node's `Buffer` (the `buffer` package). A Uint8Array payload arrives as a Buffer, anything else as JSON.
 */
import { bytesJson, type DialectSpec, jsonArg } from './dialect.ts'

export const thinger: DialectSpec = {
  uplink: 'uplink',
  downlink: 'downlink',
  functions: ['uplink', 'downlink'],
  buffer: true,
  // `module` stays mutable: the script fills `module.exports`; the entry is read from it on every call.
  globals: `
var module = { exports: {} };
G.module = module; G.exports = module.exports;
`,
  mutableGlobals: ['module', 'exports'],
  entry: `(function (f) {
  var e = module.exports;
  return e !== null && (typeof e === 'object' || typeof e === 'function') ? e[f] : undefined;
})`,
  adapt: `(function (f, a) {
  return [module.exports, [a.b ? Buffer.from(a.p) : a.p]];
})`,
  unitKey: (script) => `${script.key}\u0000thinger`,
  // CommonJS: top-level declarations are the module's own, `this` is `module.exports`.
  wrap: (source) => ({
    code: `(function (module, exports) {\n${source}\n}).call(module.exports, module, module.exports);`,
    lineOffset: -1,
    runs: true,
  }),
  encodeInput(_fn, input) {
    const payload = input.payload
    if (payload instanceof Uint8Array) return `{"p":${bytesJson(payload, 'payload')},"b":1}`
    return `{"p":${jsonArg(payload, 'payload')}}`
  },
}
