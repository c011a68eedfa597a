/**
 * ThingsBoard converters: the script is the body of `function Decoder(payload, metadata)` (uplink; `payload` an
 * array of byte values) or `function Encoder(msg, metadata, msgType, integrationMetadata)` (downlink), with
 * ThingsBoard's helpers `decodeToString`, `decodeToJson`, `btoa` and `atob` as globals.
 */
import type { ConverterFunction } from '../types.ts'
import { bytesJson, type DialectSpec, jsonArg, objectJson } from './dialect.ts'

const PARAMS: Partial<Record<ConverterFunction, string>> = {
  Decoder: 'payload, metadata',
  Encoder: 'msg, metadata, msgType, integrationMetadata',
}

// Sandbox code. decodeToString decodes UTF-8 (invalid sequences become U+FFFD); btoa/atob follow the HTML spec
// (Latin-1 strings). No regular expressions: RegExp.prototype stays unfrozen (see sandbox-harden.ts).
const GLOBALS = `
var B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function cont(b) { return (b & 0xc0) === 0x80; }
function decodeToString(payload) {
  var out = '', codes = [], i = 0, n = payload.length;
  while (i < n) {
    var b = payload[i++] & 0xff, cp = 0xfffd;
    if (b < 0x80) cp = b;
    else if (b >= 0xc2 && b < 0xe0 && i < n && cont(payload[i])) cp = ((b & 0x1f) << 6) | (payload[i++] & 0x3f);
    else if (b >= 0xe0 && b < 0xf0 && i + 1 < n && cont(payload[i]) && cont(payload[i + 1])) {
      var c3 = ((b & 0x0f) << 12) | ((payload[i] & 0x3f) << 6) | (payload[i + 1] & 0x3f);
      if (c3 >= 0x800 && (c3 < 0xd800 || c3 > 0xdfff)) { cp = c3; i += 2; }
    } else if (b >= 0xf0 && b < 0xf5 && i + 2 < n && cont(payload[i]) && cont(payload[i + 1]) && cont(payload[i + 2])) {
      var c4 = ((b & 0x07) << 18) | ((payload[i] & 0x3f) << 12) | ((payload[i + 1] & 0x3f) << 6) | (payload[i + 2] & 0x3f);
      if (c4 >= 0x10000 && c4 <= 0x10ffff) { cp = c4; i += 3; }
    }
    codes.push(cp);
    if (codes.length === 4096) { out += String.fromCodePoint.apply(String, codes); codes = []; }
  }
  return out + String.fromCodePoint.apply(String, codes);
}
function decodeToJson(payload) { return JSON.parse(decodeToString(payload)); }
function btoa(data) {
  var s = String(data), out = '';
  for (var i = 0; i < s.length; i += 3) {
    var a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
    if (a > 255 || b > 255 || c > 255) throw new Error('InvalidCharacterError: btoa takes Latin-1 characters only');
    var n = (a << 16) | ((b || 0) << 8) | (c || 0);
    out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] + (i + 1 < s.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < s.length ? B64[n & 63] : '=');
  }
  return out;
}
function atob(data) {
  var s = '', str = String(data);
  for (var k = 0; k < str.length; k++) { var ch = str[k]; if (ch !== ' ' && ch !== '\\t' && ch !== '\\n' && ch !== '\\f' && ch !== '\\r') s += ch; }
  if (s.length % 4 === 0 && s.length > 0 && s[s.length - 1] === '=') s = s.slice(0, s[s.length - 2] === '=' ? -2 : -1);
  if (s.length % 4 === 1) throw new Error('InvalidCharacterError: atob takes valid base64');
  var out = '', bits = 0, acc = 0;
  for (var j = 0; j < s.length; j++) {
    var v = B64.indexOf(s[j]);
    if (v < 0) throw new Error('InvalidCharacterError: atob takes valid base64');
    acc = (acc << 6) | v; bits += 6;
    if (bits >= 8) { bits -= 8; out += String.fromCharCode((acc >> bits) & 0xff); }
  }
  return out;
}
G.decodeToString = decodeToString; G.decodeToJson = decodeToJson; G.btoa = btoa; G.atob = atob;
`

export const thingsboard: DialectSpec = {
  uplink: 'Decoder',
  downlink: 'Encoder',
  functions: ['Decoder', 'Encoder'],
  buffer: false,
  globals: GLOBALS,
  mutableGlobals: [],
  entry: '(function (f) { return G[f]; })',
  adapt: `(function (f, a) {
  return f === 'Decoder' ? [undefined, [a.payload, a.metadata]] : [undefined, [a.msg, a.metadata, a.msgType, a.integrationMetadata]];
})`,
  // The body is compiled inside a different function header for Decoder and Encoder (`let payload` is legal in
  // one and not the other), so each function has its own unit.
  unitKey: (script, fn) => `${script.key}\u0000thingsboard\u0000${fn ?? ''}`,
  wrap(source, fn) {
    const header = fn ? `function ${fn}(${PARAMS[fn]}) {` : 'function __tetherSyntaxCheck() {'
    return { code: `${header}\n${source}\n}`, lineOffset: -1, runs: fn !== undefined }
  },
  encodeInput(fn, input) {
    const metadata = objectJson(input.metadata, 'metadata')
    if (fn === 'Decoder') return `{"payload":${bytesJson(input.payload, 'payload')},"metadata":${metadata}}`
    return `{"msg":${jsonArg(input.msg ?? {}, 'msg')},"metadata":${metadata},"msgType":${jsonArg(input.msgType ?? '', 'msgType')},"integrationMetadata":${objectJson(input.integrationMetadata, 'integrationMetadata')}}`
  },
}
