/**
 * MQTT.js's incoming store for QoS 2 (messages between PUBREC and PUBREL), made to append each new message to the
 * buffer before it is stored. MQTT.js sends PUBREC from `put`'s callback, and after PUBREC the broker never sends
 * that PUBLISH again (MQTT 3.1.1 §4.3.3): so PUBREC, not PUBCOMP, must wait for the durable write. Holding it in
 * `handleMessage` (called at PUBREL) would lose the message to a crash in between, since this store lives in memory.
 */
import type { IPublishPacket, Packet } from 'mqtt'
import { Store } from 'mqtt'

/** Appends a QoS 2 message; resolves true to send PUBREC, false to leave it unacknowledged for good. */
export type TakeQos2 = (packet: IPublishPacket) => Promise<boolean>

export class AppendingIncomingStore extends Store {
  readonly #take: TakeQos2

  constructor(take: TakeQos2) {
    super()
    this.#take = take
  }

  override put(packet: Packet, cb: (error?: Error) => void): this {
    super.get(packet as IPublishPacket, (missing) => {
      // A resend (DUP) of a message we hold already: appended once, PUBREC again.
      if (!missing) return void super.put(packet, cb)
      void this.#take(packet as IPublishPacket).then((ack) => {
        // Not acknowledged: the broker keeps the message and resends it on our next connection.
        if (ack) super.put(packet, cb)
      })
    })
    return this
  }
}
