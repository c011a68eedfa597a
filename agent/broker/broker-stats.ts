/**
 * Counters of the embedded MQTT broker, since it started (not persisted: the buffer's own counters in
 * BufferStats are the durable record of what was appended, dropped and rejected).
 */

/** What `MqttBroker.stats()` returns (also in the agent's DESCRIBE answer as `broker`). */
export interface BrokerStats {
  /** MQTT clients connected now (past CONNACK). */
  clients: number
  /** TCP and TLS connections accepted. */
  connections: number
  /** CONNECTs refused for a missing or wrong username/password. */
  authFailures: number
  /** PUBLISH packets received from clients (wills not counted). */
  messagesIn: number
  /** Messages on a mapped topic appended to the store-and-forward buffer (wills included). */
  appended: number
  /** Messages on unmapped topics: delivered on the LAN only. */
  local: number
  /**
   * Messages the buffer refused as full (reject-new): QoS 1/2 ones are never acknowledged, nor are the later ones
   * of the same connection, which is closed (counted here too); QoS 0 ones are lost.
   */
  refusedFull: number
  /** PUBLISH packets above maxPayloadBytes: the client was disconnected. */
  oversize: number
  /** As `refusedFull`, for messages the buffer refused as invalid (a record too large to store). */
  invalid: number
  /** QoS 1/2 redeliveries of a message already appended (duplicate QoS 2 message id): not appended again. */
  duplicates: number
  /** Clients disconnected for a protocol error (wildcard or empty topic in PUBLISH, bad packet…). */
  clientErrors: number
  /** Messages published for the relay (RUN `$mqtt/publish`). */
  downlinks: number
}

/** A zeroed counter set (`clients` is read live from aedes). */
export function emptyStats(): BrokerStats {
  return {
    clients: 0,
    connections: 0,
    authFailures: 0,
    messagesIn: 0,
    appended: 0,
    local: 0,
    refusedFull: 0,
    oversize: 0,
    invalid: 0,
    duplicates: 0,
    clientErrors: 0,
    downlinks: 0,
  }
}
