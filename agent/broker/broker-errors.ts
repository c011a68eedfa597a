/**
 * Errors of the embedded MQTT broker, each with a stable code and the IoTMP ERROR code it is answered with when a
 * relay's RUN `$mqtt/publish` fails. The MQTT-side ones (oversize, refusal) end a client's connection: MQTT 3.1.1
 * has no negative PUBACK, so closing is the only refusal a client understands [MQTT-3.3.5-2].
 */
import { TetherProtocolError } from '../../protocol/errors.ts'
import { WireErrorCode } from '../../protocol/messages.ts'

const catalogue = {
  TETHER_ERR_MQTT_PUBLISH_INVALID: [
    WireErrorCode.BAD_ENCODING,
    (why: string) => `$mqtt/publish refused: ${why}`,
  ],
  TETHER_ERR_MQTT_PUBLISH_FAILED: [
    WireErrorCode.HANDLER_FAILED,
    (why: string) => `$mqtt/publish failed: ${why}`,
  ],
  TETHER_ERR_MQTT_PAYLOAD_TOO_LARGE: [
    WireErrorCode.BAD_ENCODING,
    (bytes: number, max: number) => `PUBLISH of ${bytes} bytes exceeds maxPayloadBytes ${max}`,
  ],
  TETHER_ERR_MQTT_UPLINK_REFUSED: [
    WireErrorCode.HANDLER_FAILED,
    (why: string) => `PUBLISH not acknowledged, connection closed: ${why}`,
  ],
} as const

type Catalogue = typeof catalogue
export type BrokerErrorCode = keyof Catalogue

/** Builds the catalogue error `code` with its message template filled in. */
export function brokerError<C extends BrokerErrorCode>(
  code: C,
  ...args: Parameters<Catalogue[C][1]>
): TetherProtocolError {
  const [wireCode, template] = catalogue[code]
  return new TetherProtocolError(code, wireCode, (template as (...a: unknown[]) => string)(...args))
}

/** Every code, for docs and tests. */
export const BROKER_ERROR_CODES = Object.keys(catalogue) as BrokerErrorCode[]
