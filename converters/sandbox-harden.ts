/**
 * Sandbox code that locks a context down before the user's script runs (it is spliced into the prelude, see
 * sandbox-prelude.ts, and uses the intrinsics the prelude captured):
 *
 * - Size guards: some V8 builtins loop in C++ over a length the script controls without checking for
 *   termination or the heap limit (`new Array(1e9).fill(1)`, `Array.from({length: 1e9})`, `Object.keys` or
 *   `split('')` of a 2^28-character string built by doubling). isolated-vm cannot stop those: the isolate
 *   aborts the process or wedges a thread. The array methods, Array.from, the string and RegExp methods
 *   that scan or split, and Object.keys & co. are wrapped to throw a RangeError first when the length is
 *   beyond what the memory limit could hold anyway. Best effort: for-in over a huge string is not covered
 *   (syntax cannot be wrapped), nor are builtins not listed here; see isolate-slot.ts for what happens then.
 * - Overridable built-ins: `Foo.prototype.constructor = Foo`, `MyError.prototype.name = …` and `obj.toString =
 *   …` must keep working once the prototypes they inherit from are frozen (the "override mistake"), so those
 *   properties become accessors whose setter defines an own property on the receiver, as SES does.
 * - Freezing: every intrinsic reachable from the global object (and the hidden ones: iterator and generator
 *   prototypes) is frozen, so a call cannot pollute a prototype for the next one. One known cost: V8 takes
 *   its regexp fast paths only while RegExp.prototype keeps its initial shape, so each regexp operation
 *   (exec, test, replace/split/match with a regexp) costs about 0.5 µs more than in Node. Leaving
 *   RegExp.prototype unfrozen and checking it after every call instead costs about 1.5 µs on every call
 *   (Reflect.ownKeys of RegExp.prototype alone is 1.2 µs), which only pays off above ~3 regexp operations
 *   per call; typical codecs do none or a few.
 * - Global bindings of built-ins (`JSON`, `Object`, …) are made read-only; dialect globals listed as mutable
 *   (thinger's `module`) and `console` stay writable.
 */

export const HARDEN_SOURCE = `
var GUARD = 'Converter memory limit: ';
function tooLarge(what, n, max) {
  return new RangeError(GUARD + what + ' of length ' + n + ' is over the limit of ' + max);
}
function checkLength(o) {
  if (o !== null && o !== undefined) {
    var n = o.length;
    if (n > MAX_LEN) throw tooLarge('array', n, MAX_LEN);
  }
}
function checkKeys(o) {
  if ((typeof o === 'string' || o instanceof String) && o.length > MAX_LEN) throw tooLarge('string', o.length, MAX_LEN);
}
function stringOf(self, name) {
  if (self === null || self === undefined) throw new TypeError('String.prototype.' + name + ' called on null or undefined');
  var s = typeof self === 'string' ? self : StringFn(self);
  if (s.length > MAX_STR) throw tooLarge('string', s.length, MAX_STR);
  return s;
}
function wrap(obj, name, make) {
  var orig = obj[name];
  if (typeof orig !== 'function') return;
  var wrapped = make(orig, name);
  defineProperty(wrapped, 'name', { value: typeof name === 'symbol' ? '[' + name.description + ']' : name });
  defineProperty(wrapped, 'length', { value: orig.length });
  defineProperty(obj, name, { value: wrapped, writable: true, enumerable: false, configurable: true });
}
function guardThis(orig) {
  return { m: function () { checkLength(this); return apply(orig, this, arguments); } }.m;
}
function guardString(orig, name) {
  return { m: function () { return apply(orig, stringOf(this, name), arguments); } }.m;
}
function guardPad(orig, name) {
  return { m: function (maxLength) {
    if (+maxLength > MAX_STR) throw tooLarge('string', +maxLength, MAX_STR);
    return apply(orig, stringOf(this, name), arguments);
  } }.m;
}
function guardInput(orig) {
  return { m: function (input) {
    var args = [stringOf(input, 'input')];
    for (var i = 1; i < arguments.length; i++) args.push(arguments[i]);
    return apply(orig, this, args);
  } }.m;
}
function guardArgs(orig, from) {
  return { m: function () {
    for (var i = from; i < arguments.length; i++) checkKeys(arguments[i]);
    return apply(orig, this, arguments);
  } }.m;
}
function installGuards() {
  var AP = Array.prototype, SP = String.prototype;
  ['concat', 'copyWithin', 'every', 'fill', 'filter', 'find', 'findIndex', 'findLast', 'findLastIndex', 'flat',
   'flatMap', 'forEach', 'includes', 'indexOf', 'join', 'lastIndexOf', 'map', 'reduce', 'reduceRight', 'reverse',
   'shift', 'slice', 'some', 'sort', 'splice', 'toLocaleString', 'toReversed', 'toSorted', 'toSpliced', 'unshift',
   'with'].forEach(function (name) { wrap(AP, name, guardThis); });
  wrap(Array, 'from', function (orig) {
    return { m: function (items) { checkLength(items); return apply(orig, this, arguments); } }.m;
  });
  ['split', 'replace', 'replaceAll', 'match', 'matchAll', 'search', 'normalize'].forEach(function (name) { wrap(SP, name, guardString); });
  wrap(SP, 'padStart', guardPad);
  wrap(SP, 'padEnd', guardPad);
  wrap(SP, 'repeat', function (orig) {
    return { m: function (count) {
      var s = stringOf(this, 'repeat'), n = s.length * count;
      if (n > MAX_STR) throw tooLarge('string', n, MAX_STR);
      return apply(orig, s, arguments);
    } }.m;
  });
  ['exec', 'test', Symbol.match, Symbol.matchAll, Symbol.replace, Symbol.search, Symbol.split].forEach(function (key) {
    wrap(RegExp.prototype, key, guardInput);
  });
  ['keys', 'values', 'entries', 'getOwnPropertyNames', 'getOwnPropertyDescriptors'].forEach(function (name) {
    wrap(Object, name, function (orig) { return guardArgs(orig, 0); });
  });
  wrap(Object, 'assign', function (orig) { return guardArgs(orig, 1); });
  wrap(Reflect, 'ownKeys', function (orig) { return guardArgs(orig, 0); });
}

function enableOverride(obj, key) {
  var d = getOwnPropertyDescriptor(obj, key);
  if (!d || !('value' in d) || !d.configurable) return;
  var value = d.value;
  defineProperty(obj, key, {
    get: { get: function () { return value; } }.get,
    set: { set: function (v) {
      if (this === obj) throw new TypeError("Cannot assign to read only property '" + StringFn(key) + "' of a built-in prototype");
      if (this === null || (typeof this !== 'object' && typeof this !== 'function')) return;
      defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
    } }.set,
    enumerable: d.enumerable,
    configurable: false,
  });
}
function installOverrides() {
  ['constructor', 'toString', 'toLocaleString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable']
    .forEach(function (k) { enableOverride(Object.prototype, k); });
  ['constructor', 'toString'].forEach(function (k) { enableOverride(Function.prototype, k); });
  [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError, AggregateError].forEach(function (E) {
    ['constructor', 'message', 'name', 'toString'].forEach(function (k) { enableOverride(E.prototype, k); });
  });
}

function freezeAll(roots) {
  var seen = new Set(), stack = roots.slice();
  while (stack.length > 0) {
    var o = stack.pop();
    if (o === null || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) continue;
    seen.add(o);
    freeze(o);
    stack.push(getPrototypeOf(o));
    var ks = ownKeys(o);
    for (var i = 0; i < ks.length; i++) {
      var d = getOwnPropertyDescriptor(o, ks[i]);
      if ('value' in d) stack.push(d.value);
      else stack.push(d.get, d.set);
    }
  }
}

function harden(mutable) {
  // Nothing a converter needs, and each a way around the limits: wasm code and memories, shared memory waits.
  delete G.WebAssembly; delete G.SharedArrayBuffer; delete G.Atomics;
  installGuards();
  installOverrides();
  var names = getOwnPropertyNames(G), roots = [];
  for (var i = 0; i < names.length; i++) {
    var name = names[i];
    if (name === 'globalThis' || mutable.indexOf(name) >= 0) continue;
    roots.push(G[name]);
    var d = getOwnPropertyDescriptor(G, name);
    if (name !== 'console' && d.configurable) {
      if ('value' in d) defineProperty(G, name, { value: d.value, writable: false, enumerable: d.enumerable, configurable: false });
      else defineProperty(G, name, { configurable: false });
    }
  }
  roots.push(
    getPrototypeOf(function* () {}), getPrototypeOf(async function () {}), getPrototypeOf(async function* () {}),
    [][Symbol.iterator](), ''[Symbol.iterator](), new Map()[Symbol.iterator](), new Set()[Symbol.iterator](),
    /x/[Symbol.matchAll](''), getOwnPropertyDescriptor(Function.prototype, 'caller').get
  );
  freezeAll(roots);
}
`
