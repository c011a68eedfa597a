/**
 * The prelude: sandbox code run in each new context before the user's script. It captures the intrinsics it
 * relies on, installs the captured `console` and the dialect's globals, hardens the context (sandbox-harden.ts)
 * and evaluates to the dispatcher, the one function the host calls.
 *
 * Protocol (strings only, cheap to copy between isolates): `dispatch('run', batchJson, windowMs, id)` takes a
 * JSON array of calls `{"f": function, "a": arguments}` and returns one record per call, joined by newlines
 * (JSON text never holds a raw newline). A call starts only within `windowMs` of the batch's start, so each
 * call has its whole time limit; the host re-queues the calls that did not start. Records:
 *   O<output JSON, empty for undefined>   B<the same, byte arrays as {"\u0000b": [bytes]}>   E{"c": code, "m": message}
 * each followed, when the call logged, by \u0001 and the logs as JSON `[[level, line], …]`.
 * After a batch ran out of time, `dispatch('collect', id)` returns the records of its calls that finished, then
 * `L` + the logs of the one that was running. `dispatch('has', name)` says whether the script defines `name`.
 */
import { bufferModuleSource } from './buffer-source.ts'
import type { DialectSpec } from './dialects/index.ts'
import { SCRIPT_FILENAME } from './dialects/index.ts'
import { ConverterError, isErrorCode } from './errors.ts'
import { HARDEN_SOURCE } from './sandbox-harden.ts'
import type { ConverterErrorCode, ConverterLog } from './types.ts'

/** Filename of the prelude in stack traces (never the user's `converter.js`). */
export const PRELUDE_FILENAME = 'tether-sandbox.js'
/** Output nesting deeper than this is refused (a guard against cycles hidden behind getters, and stack depth). */
const MAX_OUTPUT_DEPTH = 64

export interface PreludeLimits {
  maxLogLines: number
  maxLogChars: number
  maxOutputChars: number
  /** Array lengths and key counts the size guards allow. */
  maxArrayLength: number
  /** String lengths the size guards allow. */
  maxStringLength: number
}

const DISPATCH_SOURCE = `
var logs = [], dropped = 0;
function fmt(v) {
  if (typeof v === 'string') return v;
  try {
    if (v instanceof Error) return StringFn(v.name) + ': ' + StringFn(v.message);
    if (v !== null && typeof v === 'object') { var s = stringify(v); if (s !== undefined) return s; }
    return StringFn(v);
  } catch (e) {
    try { return StringFn(v); } catch (e2) { return '[unprintable]'; }
  }
}
function capture(level) {
  return { m: function () {
    if (logs.length >= MAX_LOG_LINES) { dropped++; return; }
    var parts = [];
    for (var i = 0; i < arguments.length; i++) parts.push(fmt(arguments[i]));
    var line = parts.join(' ');
    if (line.length > MAX_LOG_CHARS) line = line.slice(0, MAX_LOG_CHARS) + '…';
    logs.push([level, line]);
  } }.m;
}
G.console = freeze({ log: capture('log'), info: capture('info'), warn: capture('warn'), error: capture('error'), debug: capture('debug') });
function takeLogs() {
  var l = logs;
  if (dropped > 0) l.push(['warn', '[' + dropped + ' more log lines dropped]']);
  logs = []; dropped = 0;
  return l;
}
function lineOf(stack) {
  if (typeof stack !== 'string') return 0;
  var at = stack.indexOf(FILE + ':');
  if (at < 0) return 0;
  var n = 0;
  for (var i = at + FILE.length + 1; i < stack.length; i++) {
    var c = stack.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
  }
  return n;
}
function describe(e) {
  try {
    if (e !== null && typeof e === 'object') {
      var name = e.name, message = e.message, text;
      if (name === undefined && message === undefined) text = stringify(e);
      else text = (name ? StringFn(name) + ': ' : '') + (message === undefined ? '' : StringFn(message));
      var line = lineOf(e.stack);
      return line ? text + ' (line ' + line + ')' : text;
    }
    return StringFn(e);
  } catch (_) {
    return 'the script threw a value that cannot be printed';
  }
}
function classify(e) {
  if (e instanceof RangeError) {
    var m = StringFn(e.message);
    if (m.indexOf(GUARD) === 0 || m === 'Array buffer allocation failed' || m === 'Invalid string length' ||
        m.indexOf('Invalid typed array length') === 0) return 'memory';
  }
  return 'script';
}
// A thrown Proxy can trap even instanceof: nothing the script throws may escape the dispatcher.
function safeClassify(e) {
  try { return classify(e); } catch (_) { return 'script'; }
}
// Logs ride after a record, behind \u0001 (JSON.stringify escapes control characters, so it cannot be inside).
function withLogs() {
  return logs.length === 0 && dropped === 0 ? '' : '\\u0001' + stringify(takeLogs());
}
function failure(code, message) {
  return 'E' + stringify({ c: code, m: message }) + withLogs();
}
function Problem(message) { this.message = message; }
function isProblem(e) {
  try { return e instanceof Problem; } catch (_) { return false; }
}
function where(path) { return path.length === 0 ? 'the top level' : path.join('.'); }
// Two passes over the output: a quick one that only flags byte arrays or a problem, and on a problem this
// precise one, which names it and where. Both stop after MAX_OUT values (shared sub-objects can make a
// small object graph expand into an enormous JSON text).
var visits = 0;
function quick(v, depth) {
  if (typeof v !== 'object') return typeof v === 'function' || typeof v === 'bigint' ? 2 : 0;
  if (v === null) return 0;
  if (isView(v) || v instanceof ArrayBuffer) return 1;
  if (depth >= MAX_DEPTH || ++visits > MAX_OUT) return 2;
  if (typeof v.toJSON === 'function') return 0;
  var flags = 0;
  if (isArray(v)) {
    if (v.length > MAX_LEN) return 2;
    for (var i = 0; i < v.length && flags < 2; i++) flags |= quick(v[i], depth + 1);
  } else {
    var ks = keys(v);
    for (var j = 0; j < ks.length && flags < 2; j++) flags |= quick(v[ks[j]], depth + 1);
  }
  return flags;
}
function scan(v, depth, stack, path) {
  var t = typeof v;
  if (t === 'function') throw new Problem('a function at ' + where(path) + ' cannot leave the sandbox');
  if (t === 'bigint') throw new Problem('a BigInt at ' + where(path) + ' has no JSON form');
  if (t !== 'object' || v === null || isView(v) || v instanceof ArrayBuffer) return;
  for (var s = 0; s < stack.length; s++) if (stack[s] === v) throw new Problem('circular reference at ' + where(path));
  if (depth >= MAX_DEPTH) throw new Problem('output nested deeper than ' + MAX_DEPTH + ' levels');
  if (++visits > MAX_OUT) throw new Problem('the output has more than ' + MAX_OUT + ' values');
  if (typeof v.toJSON === 'function') return;
  stack.push(v);
  if (isArray(v)) {
    if (v.length > MAX_LEN) throw tooLarge('array', v.length, MAX_LEN);
    for (var i = 0; i < v.length; i++) { path.push(i); scan(v[i], depth + 1, stack, path); path.pop(); }
  } else {
    var ks = keys(v);
    for (var j = 0; j < ks.length; j++) { path.push(ks[j]); scan(v[ks[j]], depth + 1, stack, path); path.pop(); }
  }
  stack.pop();
}
function bytesOf(view) { return ArrayFrom(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)); }
function bytesReplacer(k, x) {
  var raw = this[k];
  if (raw === null || typeof raw !== 'object') return x;
  if (raw instanceof ArrayBuffer) return { '\\u0000b': ArrayFrom(new Uint8Array(raw)) };
  if (!isView(raw)) return x;
  if (raw instanceof Uint8Array || raw instanceof Uint8ClampedArray || raw instanceof DataView) return { '\\u0000b': bytesOf(raw) };
  return ArrayFrom(raw);
}
function encode(result) {
  try {
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      return failure('output', 'the function returned a Promise; converters return their result directly');
    }
    visits = 0;
    var flags = quick(result, 0);
    if (flags > 1) {
      visits = 0;
      scan(result, 0, [], []);
    }
    var json = flags ? stringify(result, bytesReplacer) : stringify(result);
    if (json !== undefined && json.length > MAX_OUT) {
      return failure('output', 'the output is ' + json.length + ' characters of JSON, over the limit of ' + MAX_OUT);
    }
    return (flags ? 'B' : 'O') + (json === undefined ? '' : json) + withLogs();
  } catch (e) {
    if (isProblem(e)) return failure('output', e.message);
    return failure(safeClassify(e) === 'memory' ? 'memory' : 'output', 'the output cannot leave the sandbox: ' + describe(e));
  }
}
function runOne(c) {
  if (logs.length > 0) logs = [];
  dropped = 0;
  var fn;
  try { fn = entry(c.f); } catch (e) { fn = undefined; }
  if (typeof fn !== 'function') return failure('missing-function', 'the script defines no function ' + c.f);
  var result;
  try {
    var call = adapt(c.f, c.a);
    result = apply(fn, call[0], call[1]);
  } catch (e) {
    return failure(safeClassify(e), describe(e));
  }
  return encode(result);
}
// Batches run one after the other, but the host may queue the next before the current one ends (pipelining):
// when a batch is cut short by the time limit, the next one keeps its records and logs for 'collect'.
var current = null, interrupted = {};
function dispatch(op, arg, windowMs, id) {
  if (op === 'has') { try { return typeof entry(arg) === 'function'; } catch (e) { return false; } }
  if (op === 'collect') {
    var cut = interrupted[arg];
    delete interrupted[arg];
    if (current !== null && current.id === arg) { cut = { records: current.records, logs: takeLogs() }; current = null; }
    var done = cut ? cut.records : [];
    done.push('L' + stringify(cut ? cut.logs : []));
    return done.join('\\n');
  }
  if (current !== null) interrupted[current.id] = { records: current.records, logs: takeLogs() };
  var calls = parse(arg), t0 = now(), records = [];
  current = { id: id, records: records };
  for (var i = 0; i < calls.length; i++) {
    if (i > 0 && now() - t0 > windowMs) break;
    records.push(runOne(calls[i]));
  }
  current = null;
  return records.join('\\n');
}
`

/** The prelude's source for a dialect: one script, compiled once per isolate, run once per context. */
export function preludeSource(spec: DialectSpec, limits: PreludeLimits): string {
  const constants = {
    MAX_LEN: limits.maxArrayLength,
    MAX_STR: limits.maxStringLength,
    MAX_LOG_LINES: limits.maxLogLines,
    MAX_LOG_CHARS: limits.maxLogChars,
    MAX_OUT: limits.maxOutputChars,
    MAX_DEPTH: MAX_OUTPUT_DEPTH,
    FILE: SCRIPT_FILENAME,
  }
  // The Buffer package goes first, so the prelude captures its Buffer and hardens it with the rest.
  return `${spec.buffer ? bufferModuleSource() : ''}
(function () {
'use strict';
var G = globalThis;
${Object.entries(constants)
  .map(([k, v]) => `var ${k} = ${JSON.stringify(v)};`)
  .join('\n')}
var O = Object, defineProperty = O.defineProperty, getOwnPropertyDescriptor = O.getOwnPropertyDescriptor;
var getOwnPropertyNames = O.getOwnPropertyNames, getPrototypeOf = O.getPrototypeOf, freeze = O.freeze;
var isExtensible = O.isExtensible, keys = O.keys, ownKeys = Reflect.ownKeys, apply = Reflect.apply;
var isArray = Array.isArray, ArrayFrom = Array.from, isView = ArrayBuffer.isView, StringFn = String;
var stringify = JSON.stringify, parse = JSON.parse, now = Date.now, indirectEval = G.eval;
${spec.buffer ? 'var Buffer = G.Buffer;' : ''}
${HARDEN_SOURCE}
${DISPATCH_SOURCE}
${spec.globals}
var entry = ${spec.entry};
var adapt = ${spec.adapt};
harden(${JSON.stringify(spec.mutableGlobals)});
return dispatch;
})();
`
}

/** One call's outcome, decoded from its record. */
export type CallRecord =
  | { ok: true; output: unknown; logs: ConverterLog[] }
  | { ok: false; code: ConverterErrorCode; message: string; logs: ConverterLog[] }

const LEVELS = new Set(['log', 'info', 'warn', 'error', 'debug'])
const BYTES_KEY = '\u0000b'

/** Logs as the sandbox sent them (`[[level, line], …]`), checked: the sandbox is not trusted to be well-formed. */
export function decodeLogs(raw: unknown): ConverterLog[] {
  if (!Array.isArray(raw)) return []
  return raw
    .filter((l): l is [string, string] => Array.isArray(l) && LEVELS.has(l[0]) && typeof l[1] === 'string')
    .map(([level, message]) => ({ level: level as ConverterLog['level'], message }))
}

function reviveBytes(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const bytes = (value as Record<string, unknown>)[BYTES_KEY]
    if (Array.isArray(bytes) && Object.keys(value).length === 1) return Uint8Array.from(bytes as number[])
  }
  return value
}

/** Decodes one record of the dispatcher (see the protocol above). */
export function decodeRecord(record: string): CallRecord {
  const kind = record[0]
  const sep = record.indexOf('\u0001')
  const body = sep < 0 ? record.slice(1) : record.slice(1, sep)
  try {
    const logs = sep < 0 ? [] : decodeLogs(JSON.parse(record.slice(sep + 1)))
    if (kind === 'O' || kind === 'B') {
      const output = body === '' ? undefined : JSON.parse(body, kind === 'B' ? reviveBytes : undefined)
      return { ok: true, output, logs }
    }
    if (kind === 'E') {
      const error = JSON.parse(body) as { c?: unknown; m?: unknown }
      return { ok: false, code: isErrorCode(error.c) ? error.c : 'script', message: String(error.m), logs }
    }
  } catch {
    // fall through: a record that does not parse
  }
  return { ok: false, code: 'output', message: 'the sandbox returned an unreadable result', logs: [] }
}

/** The ConverterError of a failed record. */
export function recordError(record: Extract<CallRecord, { ok: false }>, durationMs: number): ConverterError {
  return new ConverterError(record.code, record.message, record.logs, durationMs)
}
