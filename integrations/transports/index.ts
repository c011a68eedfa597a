/** Builds the transport of an integration from its configuration (mqtt, tcp, udp; the relay serves http). */
import type { IntegrationConfig } from '../schemas.ts'
import type { Transport, TransportContext } from '../transport.ts'
import { MqttTransport } from './mqtt-transport.ts'
import { TcpTransport } from './tcp-transport.ts'
import { UdpTransport } from './udp-transport.ts'

export { MqttTransport, type MqttTransportOptions } from './mqtt-transport.ts'
export { TcpTransport, type TcpTransportOptions, type TcpTransportStatus } from './tcp-transport.ts'
export { UdpTransport, type UdpTransportOptions, type UdpTransportStatus } from './udp-transport.ts'

/** A new, not yet started transport for `config`; throws for http, which the relay's HTTP server handles. */
export function createTransport(config: IntegrationConfig, ctx: TransportContext): Transport {
  switch (config.type) {
    case 'mqtt':
      return new MqttTransport(config.mqtt, ctx, { integrationId: config.id, integrationName: config.name })
    case 'tcp':
      return new TcpTransport(config.tcp, ctx)
    case 'udp':
      return new UdpTransport(config.udp, ctx)
    case 'http':
      throw new Error(`integration ${config.id}: http integrations are served by the relay, not a transport`)
  }
}
