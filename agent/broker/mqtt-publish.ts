/**
 * RUN `$mqtt/publish` from the relay (DESIGN.md, "Downlink"): params `{topic, qos, retain}` and the payload bytes.
 * The agent publishes on its broker and answers OK once aedes has published. For callers that cannot set params,
 * the payload may instead be a map `{topic, qos?, retain?, payload}`.
 *
 * Payload: bytes as they are; a string as UTF-8; any other JSON value as its JSON text; nil as an empty message.
 */
import { brokerError } from './broker-errors.ts'
import { topicProblem } from './topic-mapping.ts'

/** The RUN resource of a downlink publish. */
export const MQTT_PUBLISH_RESOURCE = '$mqtt/publish'

/** A checked downlink publish. */
export interface PublishRequest {
  topic: string
  qos: 0 | 1 | 2
  retain: boolean
  payload: Buffer
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)

function bytesOf(value: unknown): Buffer {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (value === undefined || value === null) return Buffer.alloc(0)
  if (typeof value === 'string') return Buffer.from(value)
  return Buffer.from(JSON.stringify(value))
}

/** Checks a RUN `$mqtt/publish`; throws TETHER_ERR_MQTT_PUBLISH_INVALID naming the fault. */
export function parsePublishRequest(
  payload: unknown,
  params: Record<string, unknown> | undefined,
  maxPayloadBytes: number,
): PublishRequest {
  const inPayload = params?.topic === undefined && isMap(payload)
  const fields = inPayload ? payload : (params ?? {})
  const body = inPayload ? payload.payload : payload
  const { topic, qos = 0, retain = false } = fields
  const invalid = (why: string) => brokerError('TETHER_ERR_MQTT_PUBLISH_INVALID', why)
  if (typeof topic !== 'string') throw invalid('params/topic must be a string')
  const problem = topicProblem(topic)
  if (problem) throw invalid(`topic ${JSON.stringify(topic)}: ${problem}`)
  // `$` topics belong to the broker ($SYS) and are not for applications [MQTT-4.7.2-1].
  if (topic.startsWith('$')) throw invalid(`topic ${JSON.stringify(topic)}: $ topics are reserved`)
  if (qos !== 0 && qos !== 1 && qos !== 2) throw invalid('params/qos must be 0, 1 or 2')
  if (typeof retain !== 'boolean') throw invalid('params/retain must be a boolean')
  const bytes = bytesOf(body)
  if (bytes.length > maxPayloadBytes) {
    throw invalid(`payload of ${bytes.length} bytes exceeds maxPayloadBytes ${maxPayloadBytes}`)
  }
  return { topic, qos, retain, payload: bytes }
}
