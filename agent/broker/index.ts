/** The embedded MQTT broker: the façade and what other agent parts (metrics, bridge) use. */
export type { BrokerStats } from './broker-stats.ts'
export { MqttBroker, type MqttBrokerOptions } from './mqtt-broker.ts'
export { MQTT_PUBLISH_RESOURCE, type PublishRequest } from './mqtt-publish.ts'
export { deviceIdOf, TopicMapper, type TopicTarget } from './topic-mapping.ts'
