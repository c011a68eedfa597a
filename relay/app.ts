/**
 * The relay's app factory: builds logger, store, agent hub and auth from the validated config, registers each
 * capability with those passed explicitly, and listens. Nothing stateful lives at module level.
 */
import { readFileSync } from 'node:fs'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify'
import { type Logger, pino } from 'pino'
import { ConverterEngine } from '../converters/index.ts'
import { readCaFiles } from '../protocol/tls-target.ts'
import assetsPlugin, { levelAssetsStore } from './assets/index.ts'
import type { ApiTokenRecord } from './auth/api-tokens.ts'
import authPlugin from './auth/index.ts'
import { levelUsersStore } from './auth/users-store.ts'
import { BucketService, bucketsPlugin, levelBucketsStore, levelPointsStore } from './buckets/index.ts'
import callbacksPlugin from './callbacks/index.ts'
import { loadRelayConfig, type RelayConfig } from './config.ts'
import { ConverterService } from './converters/converter-service.ts'
import { levelConvertersStore } from './converters/converters-store.ts'
import { DebugEvents } from './converters/debug-events.ts'
import convertersPlugin from './converters/index.ts'
import dataPlugin, { DataSinks, deviceSink } from './data/index.ts'
import { PropertyDownlinks } from './data/property-downlinks.ts'
import { trackAgentTraffic } from './devices/agent-traffic.ts'
import { DeviceTraffic } from './devices/device-traffic.ts'
import { levelDevicesStore } from './devices/devices-store.ts'
import devicesPlugin from './devices/index.ts'
import { EndpointService } from './endpoints/endpoint-service.ts'
import { levelEndpointsStore } from './endpoints/endpoints-store.ts'
import endpointsPlugin from './endpoints/index.ts'
import groupsPlugin, { levelGroupsStore } from './groups/index.ts'
import { DUPLICATE_HOST_RESPONSE, hasSingleHost } from './host-header.ts'
import { AgentHub } from './hub/agent-hub.ts'
import integrationsPlugin from './integrations/index.ts'
import { IntegrationManager } from './integrations/integration-manager.ts'
import { levelIntegrationsStore } from './integrations/integrations-store.ts'
import { OutputApplier } from './integrations/output-applier.ts'
import { RemoteIntegrationLinks } from './integrations/remote-integrations.ts'
import { remoteIntegrationSink } from './integrations/remote-sink.ts'
import metricsPlugin from './metrics/index.ts'
import portalsPlugin from './portals/index.ts'
import { PortalServer } from './portals/portal-server.ts'
import { PortalSessions } from './portals/portal-sessions.ts'
import propertiesPlugin from './properties/index.ts'
import { PropertyService } from './properties/property-service.ts'
import proxiesPlugin from './proxies/index.ts'
import { levelProxiesStore } from './proxies/proxies-store.ts'
import { ProxyManager } from './proxies/proxy-manager.ts'
import { cachedTable } from './store/cached-table.ts'
import { openLevelStore } from './store/level-store.ts'
import { formatValidationErrors } from './validation-messages.ts'
import consolePlugin from './web/index.ts'

/** A running relay. */
export interface Relay {
  app: FastifyInstance
  hub: AgentHub
  proxies: ProxyManager
  /** Buckets (time series): other capabilities and tests write and read through it. */
  buckets: BucketService
  /** Agents' data uplink (RUN `$data`): sinks by record source; the device sink takes the rest. */
  data: DataSinks
  properties: PropertyService
  traffic: DeviceTraffic
  config: Readonly<RelayConfig>
  /** Integrations: transports, uplink conversion, downlinks. */
  integrations: IntegrationManager
  /** Calls of users' endpoints (callbacks enqueue theirs here). */
  endpoints: EndpointService
  /** Bound port (useful with `port: 0`). */
  port: number
  /** `http://host:port` or `https://…` */
  url: string
  /** `ws://host:port/iotmp` or `wss://…` */
  iotmpUrl: string
  close(): Promise<void>
}

export interface RelayStartOptions {
  logger?: Logger
  /** Called once at first start with the admin password to show. */
  onAdminCreated?: (username: string, password: string, generated: boolean) => void
}

/** Secrets never reach logs. */
const REDACT = [
  'req.headers.authorization',
  'credential',
  'password',
  'token',
  'access_token',
  'refresh_token',
  '*.credential',
  '*.password',
]

/** Creates the relay's pino logger: JSON lines, or readable lines when stdout is a terminal. */
export function relayLogger(level: string, pretty = process.stdout.isTTY === true): Logger {
  const transport = pretty
    ? pino.transport({ target: 'pino-pretty', options: { ignore: 'pid,hostname' } })
    : undefined
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' } }, transport)
}

/** Starts a relay from (partial) configuration; defaults fill the rest. */
export async function startRelay(input: Partial<RelayConfig>, opts: RelayStartOptions = {}): Promise<Relay> {
  const config = loadRelayConfig(input)
  const logger = opts.logger ?? relayLogger(config.logLevel)
  const targetCa = readCaFiles(config.targetCa)
  const store = await openLevelStore(config.dataDir)
  const tlsOptions = config.tlsCert
    ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey as string) }
    : undefined

  // Read on every callback, agent connect and request: cached (see cachedTable).
  const devices = levelDevicesStore(cachedTable(store.table('devices')))
  const buckets = await BucketService.open({
    buckets: levelBucketsStore(cachedTable(store.table('buckets'))),
    points: levelPointsStore(store.db),
    log: logger.child({ component: 'buckets' }),
  })
  const hub = new AgentHub({
    devices,
    logger: logger.child({ component: 'hub' }),
    windowBytes: config.windowBytes,
    maxWindowBytes: config.maxWindowBytes,
    maxFrameBytes: config.maxFrameBytes,
    maxKeepAliveSec: config.maxKeepAliveSec,
    trustProxy: config.trustProxy,
  })
  const proxies = new ProxyManager({
    hub,
    plugins: config.plugins,
    log: logger.child({ component: 'proxies' }),
    dialTimeoutMs: config.dialTimeoutMs,
    targetCa,
  })
  const proxiesStore = levelProxiesStore(store.table('proxies'))
  const endpointsStore = levelEndpointsStore(store.table('endpoints'))
  const endpoints = new EndpointService({
    store: endpointsStore,
    log: logger.child({ component: 'endpoints' }),
  })
  const portalSessions = await PortalSessions.open(store.table('portal-sessions'), config.portalLinkTtlSec)
  const portals = new PortalServer({
    registry: proxies.portals,
    sessions: portalSessions,
    portalDomain: config.portalDomain,
    mode: config.portalMode,
    responseTimeoutMs: config.portalResponseTimeoutSec * 1000,
    https: tlsOptions !== undefined,
    trustProxy: config.trustProxy,
    log: logger.child({ component: 'portals' }),
  })

  // Portal requests are proxied straight from the HTTP server: they never reach fastify's routes or body parsers.
  const serverFactory = (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      if (!hasSingleHost(req)) return void req.socket.end(DUPLICATE_HOST_RESPONSE)
      const match = portals.match(req)
      if (match) portals.handleRequest(req, res, match)
      else handler(req, res)
    }
    return tlsOptions ? https.createServer(tlsOptions, onRequest) : http.createServer(onRequest)
  }

  const app = Fastify({
    serverFactory,
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.trustProxy,
    // Idle keep-alive and never-used sockets must not hold up a shutdown (systemd would SIGKILL us).
    forceCloseConnections: true,
    schemaErrorFormatter: formatValidationErrors,
    ajv: {
      customOptions: {
        removeAdditional: false,
        coerceTypes: 'array',
        useDefaults: true,
        discriminator: true,
      },
    },
  }) as unknown as FastifyInstance

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500
    const code = err.validation ? 'TETHER_ERR_VALIDATION' : (err.code ?? 'TETHER_ERR_INTERNAL')
    if (status >= 500) req.log.error({ err }, 'request failed')
    else req.log.info({ code, url: req.url }, err.message)
    reply.code(status).send({ error: { code, message: status >= 500 ? 'internal error' : err.message } })
  })
  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .send({ error: { code: 'TETHER_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url}` } })
  })

  app.get('/healthz', async () => ({ status: 'ok', agents: hub.size }))
  await app.register(authPlugin, {
    users: levelUsersStore(cachedTable(store.table('users'))),
    apiTokens: store.table<ApiTokenRecord>('api-tokens'),
    meta: store.table<string>('meta'),
    accessTokenTtlSec: config.accessTokenTtlSec,
    refreshTokenTtlSec: config.refreshTokenTtlSec,
    adminPassword: config.adminPassword,
    onAdminCreated: opts.onAdminCreated,
  })
  const properties = new PropertyService(store.table('properties'))
  const traffic = await DeviceTraffic.open(store.table('device-traffic'), config.statsFlushMs)
  const stopAgentTraffic = trackAgentTraffic(hub, traffic, config.statsFlushMs)
  await app.register(devicesPlugin, {
    devices,
    hub,
    traffic,
    onDeleted: (user, device) => properties.deleteAll(user, device),
  })
  await app.register(propertiesPlugin, { properties, devices })
  await app.register(callbacksPlugin, {
    exists: async (kind, user, id) =>
      kind === 'bucket'
        ? buckets.get(user, id).then(
            () => true,
            () => false,
          )
        : (await endpointsStore.get(user, id)) !== undefined,
    devices,
    traffic,
    properties,
    buckets,
    endpoints,
    publicUrl: config.publicUrl,
  })
  await app.register(proxiesPlugin, {
    proxies: proxiesStore,
    manager: proxies,
    plugins: Object.keys(config.plugins),
    onDeleted: (id) => portalSessions.revoke({ proxy: id }),
  })

  await app.register(portalsPlugin, {
    registry: proxies.portals,
    sessions: portalSessions,
    proxies: proxiesStore,
    devices,
    portalDomain: config.portalDomain,
    mode: config.portalMode,
    sessionTtlSec: config.portalSessionTtlSec,
    linkTtlSec: config.portalLinkTtlSec,
    publicUrl: config.publicUrl,
  })
  await app.register(consolePlugin, { portalDomain: config.portalDomain, portalMode: config.portalMode })

  await app.register(endpointsPlugin, { endpoints: endpointsStore, service: endpoints })

  // Converters and integrations: one isolate pool for the relay; converter and integration debug events in memory.
  const engine = new ConverterEngine({
    memoryLimitMb: config.converterMemoryMb,
    timeoutMs: config.converterTimeoutMs,
    isolates: config.converterIsolates,
  })
  const debugEvents = new DebugEvents()
  const converters = new ConverterService({
    store: levelConvertersStore(store.table('converters')),
    engine,
    debug: debugEvents,
    log: logger.child({ component: 'converters' }),
  })
  const assets = levelAssetsStore(store.table('assets'))
  const groups = levelGroupsStore(store.table('groups'))
  const integrationsStore = levelIntegrationsStore(store.table('integrations'))
  const integrationsLog = logger.child({ component: 'integrations' })
  const applier = new OutputApplier({
    devices,
    buckets,
    properties,
    assets,
    groups,
    traffic,
    log: integrationsLog,
  })
  const remoteIntegrations = new RemoteIntegrationLinks(hub)
  const integrations = new IntegrationManager({
    converters,
    applier,
    remote: remoteIntegrations,
    devices,
    properties,
    debug: debugEvents,
    log: integrationsLog,
  })
  await app.register(convertersPlugin, {
    service: converters,
    usedBy: async (user, id) => integrations.usedBy(user, id),
    onChanged: (record, deleted) => void integrations.converterChanged(record, deleted),
  })
  await app.register(integrationsPlugin, {
    store: integrationsStore,
    manager: integrations,
    converters,
    devices,
    debug: debugEvents,
    publicUrl: config.publicUrl,
  })
  await app.register(assetsPlugin, { assets })
  await app.register(groupsPlugin, { groups })
  await app.register(bucketsPlugin, { service: buckets })
  const dataLog = logger.child({ component: 'data' })
  const data = new DataSinks(deviceSink({ devices, buckets, traffic, log: dataLog }))
  data.register('integration', remoteIntegrationSink(integrations, applier, integrationsLog))
  await app.register(dataPlugin, { hub, sinks: data, db: store.db, log: dataLog })
  const downlinks = new PropertyDownlinks({ hub, properties, devices, log: dataLog })
  app.addHook('onClose', () => downlinks.close())
  await app.register(metricsPlugin, { hub, proxies, data: data.counters })

  app.server.on('upgrade', (req, socket, head) => {
    if (!hasSingleHost(req)) return void socket.end(DUPLICATE_HOST_RESPONSE)
    const match = portals.match(req)
    if (match) portals.handleUpgrade(req, socket, head, match)
    else hub.handleUpgrade(req, socket, head)
  })
  app.addHook('preClose', async () => {
    await integrations.close()
    await proxies.closeAll()
    await hub.close()
  })
  app.addHook('onClose', async () => {
    stopAgentTraffic()
    await traffic.close()
    portalSessions.close()
    engine.close()
    await store.close()
  })

  // Before listening: an agent that connects must find its remote integrations already wanted (its sync would
  // otherwise stop them until they are applied).
  for (const record of await integrationsStore.list()) await integrations.apply(record)
  await app.listen({ host: config.host, port: config.port })
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port

  // Profiles persist: re-open every listener at start (a failure is kept on the profile's status).
  for (const profile of await proxiesStore.list()) await proxies.apply(profile)

  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  const hostPart = host.includes(':') ? `[${host}]` : host
  const scheme = tlsOptions ? 'https' : 'http'
  return {
    app,
    hub,
    proxies,
    buckets,
    data,
    properties,
    traffic,
    endpoints,
    integrations,
    config,
    port,
    url: `${scheme}://${hostPart}:${port}`,
    iotmpUrl: `${tlsOptions ? 'wss' : 'ws'}://${hostPart}:${port}/iotmp`,
    close: () => app.close(),
  }
}
