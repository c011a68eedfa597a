/**
 * ThingsBoard uplink converter output, checked and normalised: one object or an array; each names a device
 * (`deviceName` + `deviceType`) or an asset (`assetName` + `assetType`), optionally a customer and a group, and
 * carries `attributes` and `telemetry` (`{k: v}`, `{ts, values}` or an array of those).
 */

/** One telemetry sample: `ts` is ms since epoch (absent: the time of the uplink). */
export interface TelemetrySample {
  ts?: number
  values: Record<string, unknown>
}

/** A device or asset an uplink reported on. */
export interface UplinkEntity {
  kind: 'device' | 'asset'
  name: string
  type: string
  customerName?: string
  groupName?: string
  attributes: Record<string, unknown>
  telemetry: TelemetrySample[]
}

/** Converter output that cannot be applied; the message names the offending path. */
export class UplinkOutputError extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v)

/** A name field: a non-empty string (numbers are accepted and turned into text, as ThingsBoard does). */
function nameField(v: unknown, path: string): string {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  if (typeof v !== 'string' || v.trim() === '')
    throw new UplinkOutputError(`${path} must be a non-empty string`)
  if (v.length > 255) throw new UplinkOutputError(`${path} is longer than 255 characters`)
  return v
}

function optionalName(v: unknown, path: string): string | undefined {
  return v === undefined || v === null || v === '' ? undefined : nameField(v, path)
}

/** A ts as ThingsBoard takes it: integer ms, or a numeric string. */
function tsField(v: unknown, path: string): number {
  const ts = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) {
    throw new UplinkOutputError(`${path} must be a timestamp in ms since epoch`)
  }
  return ts
}

function sample(v: unknown, path: string): TelemetrySample {
  if (!isObject(v)) throw new UplinkOutputError(`${path} must be an object`)
  if ('ts' in v && 'values' in v) {
    if (!isObject(v.values)) throw new UplinkOutputError(`${path}/values must be an object`)
    return { ts: tsField(v.ts, `${path}/ts`), values: v.values }
  }
  return { values: v }
}

function telemetry(v: unknown, path: string): TelemetrySample[] {
  if (v === undefined || v === null) return []
  if (Array.isArray(v)) return v.map((s, i) => sample(s, `${path}/${i}`))
  return [sample(v, path)]
}

function entity(v: unknown, path: string): UplinkEntity {
  if (!isObject(v)) throw new UplinkOutputError(`${path} must be an object`)
  const device = v.deviceName !== undefined
  const asset = v.assetName !== undefined
  if (device && asset) throw new UplinkOutputError(`${path} has both deviceName and assetName; use one`)
  if (!device && !asset) throw new UplinkOutputError(`${path} has neither deviceName nor assetName`)
  if (v.attributes !== undefined && v.attributes !== null && !isObject(v.attributes)) {
    throw new UplinkOutputError(`${path}/attributes must be an object`)
  }
  const kind = device ? 'device' : 'asset'
  const typeKey = device ? 'deviceType' : 'assetType'
  return {
    kind,
    name: nameField(device ? v.deviceName : v.assetName, `${path}/${kind}Name`),
    type: optionalName(v[typeKey], `${path}/${typeKey}`) ?? 'default',
    customerName: optionalName(v.customerName, `${path}/customerName`),
    groupName: optionalName(v.groupName, `${path}/groupName`),
    attributes: (v.attributes as Record<string, unknown> | undefined) ?? {},
    telemetry: telemetry(v.telemetry, `${path}/telemetry`),
  }
}

/** Checks and normalises a ThingsBoard-shaped output; throws UplinkOutputError naming the first problem. */
export function uplinkEntities(output: unknown): UplinkEntity[] {
  if (Array.isArray(output)) {
    if (output.length > 1000) throw new UplinkOutputError(`output has ${output.length} entries; at most 1000`)
    return output.map((o, i) => entity(o, `output/${i}`))
  }
  return [entity(output, 'output')]
}
