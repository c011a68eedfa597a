/**
 * The Things Network Device Repository codecs: a classic script declaring `decodeUplink({bytes, fPort, recvTime})`
 * → `{data, warnings?, errors?}`, `encodeDownlink({data, fPort?})` → `{bytes, fPort, …}` and
 * `decodeDownlink({bytes, fPort})`, in ES5 or ES2015+ (top-level `const f = () => …` included).
 */
import { ConverterError } from '../errors.ts'
import { bytesJson, type DialectSpec, jsonArg, portMember } from './dialect.ts'

export const ttn: DialectSpec = {
  uplink: 'decodeUplink',
  downlink: 'encodeDownlink',
  functions: ['decodeUplink', 'encodeDownlink', 'decodeDownlink'],
  buffer: false,
  globals: '',
  mutableGlobals: [],
  // An indirect eval resolves the name in the global scope, which also holds top-level let/const/class
  // bindings (not properties of the global object). Looked up once per function.
  entry: `(function () {
  var found = {};
  return function (f) {
    if (found[f]) return found[f];
    var fn = indirectEval('typeof ' + f + " === 'function' ? " + f + ' : undefined');
    if (fn) found[f] = fn;
    return fn;
  };
})()`,
  adapt: `(function (f, a) {
  if (f === 'decodeUplink') a.recvTime = new Date(a.recvTime);
  return [undefined, [a]];
})`,
  unitKey: (script) => `${script.key}\u0000ttn`,
  wrap: (source) => ({ code: source, lineOffset: 0, runs: true }),
  encodeInput(fn, input) {
    const fPort = portMember(input.fPort)
    if (fn === 'encodeDownlink') return `{"data":${jsonArg(input.data, 'data')}${fPort}}`
    const bytes = bytesJson(input.bytes, 'bytes')
    if (fn === 'decodeDownlink') return `{"bytes":${bytes}${fPort}}`
    const recvTime = input.recvTime ?? new Date()
    if (!(recvTime instanceof Date) || Number.isNaN(recvTime.getTime())) {
      throw new ConverterError('input', 'recvTime must be a valid Date')
    }
    return `{"bytes":${bytes}${fPort},"recvTime":${recvTime.getTime()}}`
  },
}
