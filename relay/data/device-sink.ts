/**
 * The default data sink: records about LAN devices (sources `mqtt`, `bridge`, `http`, and any source without a
 * sink of its own) become points in the device's bucket, under the agent owner's account.
 *
 * - The device is the record's `device`, sanitised to a device id (`^[A-Za-z0-9_-]{1,64}$`: other characters
 *   become `_`, cut at 64; two names that sanitise alike share a device); a record without one is about the agent
 *   itself. A device seen for the first time is provisioned as type `integration`, with a bucket of the same id,
 *   and records the agent it came through (`via`: property downlinks go back through that agent).
 * - A record with a `bucket` (the agent's topic mapping named one) goes to that bucket instead, created on first
 *   use like the device's own.
 * - The point is at the record's ts, its value the payload (point-value.ts). Its key derives from the agent, its
 *   buffer epoch and the seq (BucketService.writeAt), so a redelivered record overwrites its own point.
 * - A disabled device or bucket takes nothing: its records are counted as rejected and acknowledged.
 * - The device's last-seen and traffic counters are updated.
 */
import type { Logger } from 'pino'
import type { BucketService } from '../buckets/bucket-service.ts'
import type { DeviceTraffic } from '../devices/device-traffic.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import type { DeviceRecord } from '../devices/schemas.ts'
import type { DataAgent, DataSink } from './data-sinks.ts'
import { payloadBytes, pointValue } from './point-value.ts'
import type { DataRecord } from './records.ts'

export interface DeviceSinkOptions {
  devices: DevicesStore
  buckets: BucketService
  traffic: DeviceTraffic
  log: Logger
}

/** A device id for the agent's name of a LAN device (see above). */
export function deviceIdOf(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)
}

const hasCode = (err: unknown, code: string) => (err as { code?: unknown })?.code === code

/** The device sink (see above). */
export function deviceSink(opts: DeviceSinkOptions): DataSink {
  const { devices, buckets, traffic, log } = opts
  /** Provisioning in progress per `user/device/bucket`: two agents' first records create a device once. */
  const provisioning = new Map<string, Promise<boolean>>()

  /** Makes sure the device and its bucket (`bucketId`, default its own) exist; whether both take data. */
  const provision = (user: string, id: string, agent: DataAgent, bucketId = id): Promise<boolean> => {
    const key = `${user}/${id}/${bucketId}`
    const running = provisioning.get(key)
    if (running) return running
    const run = (async () => {
      let device = await devices.get(user, id)
      if (!device) {
        const record: DeviceRecord = {
          user,
          device: id,
          type: 'integration',
          name: id,
          description: `provisioned by agent ${agent.device} on its first data`,
          enabled: true,
          created_ts: Date.now(),
          via: { agent: agent.device },
        }
        await devices.put(record)
        device = record
        log.info({ user, device: id, agent: agent.device }, 'device provisioned for agent data')
      }
      if (!device.enabled) return false
      const bucket = await buckets.get(user, bucketId).catch((err) => {
        if (hasCode(err, 'TETHER_ERR_NOT_FOUND')) return undefined
        throw err
      })
      if (bucket) return bucket.enabled
      try {
        const config = { source: 'agent' as const, device: id }
        const created = await buckets.create(user, {
          bucket: bucketId,
          name: bucketId,
          enabled: true,
          config,
        })
        return created.enabled
      } catch (err) {
        // Created meanwhile by the owner or an integration: use it. "Still being deleted" stays an error: retry.
        if (hasCode(err, 'TETHER_ERR_CONFLICT') && /already exists/.test((err as Error).message)) {
          return (await buckets.get(user, bucketId)).enabled
        }
        throw err
      }
    })().finally(() => provisioning.delete(key))
    provisioning.set(key, run)
    return run
  }

  /** Writes one device's records for one bucket; how many it refused. */
  const store = async (agent: DataAgent, id: string, bucketId: string, records: DataRecord[]) => {
    if (!(await provision(agent.user, id, agent, bucketId))) return records.length
    const points = records.map((r) => ({ ts: r.ts, seq: r.seq, value: pointValue(r.payload) }))
    try {
      await buckets.writeAt(agent.user, bucketId, points, {
        origin: `${agent.device}.${agent.epoch}`,
        source: 'agent',
      })
    } catch (err) {
      // Disabled meanwhile (409) or a value that cannot be stored (400): refused for good, never retried.
      if (!hasCode(err, 'TETHER_ERR_BAD_REQUEST') && !hasCode(err, 'TETHER_ERR_CONFLICT')) throw err
      log.info(
        { user: agent.user, device: id, records: records.length },
        `records refused: ${(err as Error).message}`,
      )
      return records.length
    }
    const rx = records.reduce((sum, r) => sum + payloadBytes(r.payload), 0)
    traffic.record(agent.user, id, { rx, tx: 0, messages: records.length })
    return 0
  }

  return async (agent, records) => {
    const byTarget = new Map<string, { id: string; bucketId: string; list: DataRecord[] }>()
    for (const record of records) {
      const id = record.device === undefined ? agent.device : deviceIdOf(record.device)
      const bucketId = record.bucket ?? id
      const key = `${id}/${bucketId}`
      const target = byTarget.get(key)
      if (target) target.list.push(record)
      else byTarget.set(key, { id, bucketId, list: [record] })
    }
    const results = await Promise.allSettled(
      [...byTarget.values()].map(({ id, bucketId, list }) => store(agent, id, bucketId, list)),
    )
    let rejected = 0
    for (const result of results) {
      if (result.status === 'rejected') throw result.reason
      rejected += result.value
    }
    return { rejected }
  }
}
