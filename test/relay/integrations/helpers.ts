/** Shared steps of the integration tests: converters and integrations created through the real API. */
import assert from 'node:assert/strict'
import type { TestRelay } from '../../e2e/harness.ts'

export interface IntegrationView {
  id: string
  type: string
  http?: { routingKey: string }
  status: {
    state: string
    port?: number
    url?: string
    uplinks: number
    errors: number
    downlinks: number
    downlinks_pending: number
    downlinks_dropped: number
    last_error?: { message: string }
  }
}

/** ThingsBoard's documented HTTP uplink converter (the Decoder body as its docs show it). */
export const TB_HTTP_DECODER = `// Decode an uplink message from a buffer
// payload - array of bytes
// metadata - key/value object
/** Decoder **/
// decode payload to string
// var payloadStr = decodeToString(payload);
// decode payload to JSON
var data = decodeToJson(payload);
var deviceName = data.deviceName;
var deviceType = data.deviceType;
// Result object with device attributes/telemetry data
var result = {
   deviceName: deviceName,
   deviceType: deviceType,
   attributes: {
       model: data.model,
       serialNumber: data.param2,
   },
   telemetry: {
       temperature: data.temperature
   }
};
/** Helper functions **/
function decodeToString(payload) {
   return String.fromCharCode.apply(String, payload);
}
function decodeToJson(payload) {
   // covert payload to string.
   var str = decodeToString(payload);
   // parse string to JSON
   var data = JSON.parse(str);
   return data;
}
return result;`

/** ThingsBoard's documented downlink Encoder. */
export const TB_ENCODER = `// Encode downlink data from incoming Rule Engine message
// msg - JSON message payload downlink message json
// msgType - type of message, for ex. 'ATTRIBUTES_UPDATED', 'POST_TELEMETRY_REQUEST', etc.
// metadata - list key-value pairs with additional data about the message
// integrationMetadata - list key-value pairs with additional data defined in Integration executing this converter
/** Encoder **/
var data = {};
// Process data from incoming message and metadata
data.tempFreq = msg.temperatureUploadFrequency;
data.humFreq = msg.humidityUploadFrequency;
data.devSerialNumber = metadata['ss_serialNumber'];
// Result object with encoded downlink payload
var result = {
    // downlink data content type: JSON, TEXT or BINARY (base64 format)
    contentType: "JSON",
    // downlink data
    data: JSON.stringify(data),
    // Optional metadata object presented in key/value format
    metadata: {
            topic: metadata['deviceType']+'/'+metadata['deviceName']+'/upload'
    }
};
return result;`

/** Creates a converter of the admin; fails the test unless it is created. */
export async function converter(
  relay: TestRelay,
  id: string,
  dialect: string,
  direction: 'uplink' | 'downlink',
  script: string,
  debug = false,
) {
  const res = await relay.api('POST', '/v1/users/admin/converters', { id, dialect, direction, script, debug })
  assert.equal(res.status, 201, JSON.stringify(res.body))
}

/** Creates an integration of the admin and returns its view. */
export async function integration(
  relay: TestRelay,
  config: Record<string, unknown>,
): Promise<IntegrationView> {
  const res = await relay.api<IntegrationView>('POST', '/v1/users/admin/integrations', config)
  assert.equal(res.status, 201, JSON.stringify(res.body))
  return res.body
}

/** The admin's bucket points, oldest first. */
export async function points(relay: TestRelay, bucket: string): Promise<Array<Record<string, unknown>>> {
  const res = await relay.api<Array<Record<string, unknown>>>(
    'GET',
    `/v1/users/admin/buckets/${bucket}/data?sort=asc&items=1000`,
  )
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body
}

/** Polls (no event exists for "stored") until `bucket` holds at least `n` points; returns them oldest first. */
export async function waitForPoints(
  relay: TestRelay,
  bucket: string,
  n: number,
): Promise<Array<Record<string, unknown>>> {
  for (let i = 0; i < 1000; i++) {
    const res = await relay.api<unknown[]>('GET', `/v1/users/admin/buckets/${bucket}/data?items=1000`)
    if (res.status === 200 && res.body.length >= n) return points(relay, bucket)
    await new Promise((r) => setTimeout(r, 10))
  }
  assert.fail(`bucket ${bucket} never held ${n} points`)
}
