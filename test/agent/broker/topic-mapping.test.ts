import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  DEVICE_ID_PATTERN,
  deviceIdOf,
  filterProblem,
  matchLevels,
  TopicMapper,
  topicProblem,
} from '../../../agent/broker/topic-mapping.ts'
import type { TopicMapping } from '../../../agent/data-config.ts'

const matches: Array<{ filter: string; topic: string; captured: string[] | undefined }> = [
  { filter: 'a/b', topic: 'a/b', captured: [] },
  { filter: 'a/b', topic: 'a/b/c', captured: undefined },
  { filter: 'a/b', topic: 'a', captured: undefined },
  { filter: 'a/+', topic: 'a/x', captured: ['x'] },
  { filter: 'a/+', topic: 'a/', captured: [''] }, // + matches an empty level
  { filter: 'a/+', topic: 'a/x/y', captured: undefined },
  { filter: '+/+', topic: '/x', captured: ['', 'x'] },
  { filter: 'a/#', topic: 'a/x/y', captured: ['x/y'] },
  { filter: 'a/#', topic: 'a', captured: [''] }, // # also matches the parent level [MQTT-4.7.1-2]
  { filter: 'a/#', topic: 'b/x', captured: undefined },
  { filter: '#', topic: 'anything/at/all', captured: ['anything/at/all'] },
  { filter: 'a/+/c/#', topic: 'a/1/c/2/3', captured: ['1', '2/3'] },
  { filter: 'a/+/c/#', topic: 'a/1/d/2', captured: undefined },
  { filter: 'A/b', topic: 'a/b', captured: undefined }, // case-sensitive
]

describe('matchLevels', () => {
  for (const { filter, topic, captured } of matches) {
    it(`${filter} ~ ${topic}`, () => {
      assert.deepEqual(matchLevels(filter.split('/'), topic), captured)
    })
  }
})

describe('filterProblem and topicProblem', () => {
  it('accepts valid filters and refuses misplaced wildcards', () => {
    for (const ok of ['a', 'a/b', '+', '#', '+/+/#', 'a//b', '/a', 'a/'])
      assert.equal(filterProblem(ok), undefined)
    for (const bad of ['', 'a/#/b', 'a#', 'a/b#', 'a+', '+a/b', 'a/+b', 'a\u0000b']) {
      assert.ok(filterProblem(bad), `${JSON.stringify(bad)} refused`)
    }
  })
  it('refuses wildcards, NUL and empty topics in a topic name', () => {
    for (const ok of ['a', 'a/b', 'a//b', '/', '$SYS/x']) assert.equal(topicProblem(ok), undefined)
    for (const bad of ['', 'a/+', 'a/#', 'a+b', 'a\u0000', 'x'.repeat(65_536)]) assert.ok(topicProblem(bad))
  })
})

describe('deviceIdOf', () => {
  it('sanitises like the relay: other characters become _, cut at 64', () => {
    assert.equal(deviceIdOf('sensor-1_A'), 'sensor-1_A')
    assert.equal(deviceIdOf('d1/with:odd chars'), 'd1_with_odd_chars')
    assert.equal(deviceIdOf('é'), '_')
    assert.equal(deviceIdOf('x'.repeat(100)), 'x'.repeat(64))
    assert.match(deviceIdOf('a.b c/d#e'), DEVICE_ID_PATTERN)
  })
})

describe('TopicMapper', () => {
  const mappings: TopicMapping[] = [
    { filter: 'devices/+/data', device: '{1}' },
    { filter: 'site/+/+/telemetry', device: '{1}-{2}', bucket: 'site-{1}' },
    { filter: 'raw/#', device: 'raw-{1}' },
    { filter: 'fixed/topic', device: 'plc.main' },
    { filter: '+/status', device: 'status-{1}' },
    { filter: 'devices/#', device: 'catch-all' },
  ]
  const mapper = TopicMapper.compile(mappings)

  const cases: Array<[string, ReturnType<TopicMapper['match']>]> = [
    ['devices/sensor-1/data', { device: 'sensor-1', mapping: 0 }],
    ['devices/sensor.1/data', { device: 'sensor_1', mapping: 0 }],
    // the first rule's device renders empty: the next matching rule takes it
    ['devices//data', { device: 'catch-all', mapping: 5 }],
    ['devices/x/other', { device: 'catch-all', mapping: 5 }],
    ['site/north/pump7/telemetry', { device: 'north-pump7', bucket: 'site-north', mapping: 1 }],
    ['raw/a/b/c', { device: 'raw-a_b_c', mapping: 2 }],
    ['raw', { device: 'raw-', mapping: 2 }],
    ['fixed/topic', { device: 'plc_main', mapping: 3 }],
    ['boiler/status', { device: 'status-boiler', mapping: 4 }],
    // a filter starting with a wildcard never matches a $ topic [MQTT-4.7.2-1]
    ['$SYS/status', undefined],
    ['unmapped/topic', undefined],
    ['devices', { device: 'catch-all', mapping: 5 }],
  ]
  for (const [topic, target] of cases) {
    it(`maps ${JSON.stringify(topic)}`, () => assert.deepEqual(mapper.match(topic), target))
  }

  it('renders only valid device ids', () => {
    for (const topic of ['devices/a b/data', `devices/${'y'.repeat(200)}/data`, 'raw/ü/%']) {
      assert.match((mapper.match(topic) as { device: string }).device, DEVICE_ID_PATTERN)
    }
  })

  it('refuses bad filters and placeholders past the wildcards, naming the mapping', () => {
    const bad: Array<[TopicMapping[], RegExp]> = [
      [[{ filter: 'a/#/b', device: 'x' }], /topics\/0\/filter "a\/#\/b": # must be a whole level/],
      [
        [{ filter: 'a/+', device: '{2}' }],
        /topics\/0\/device refers to \{2\} but the filter has wildcards \{1\} to \{1\}/,
      ],
      [
        [
          { filter: 'a', device: 'ok' },
          { filter: 'a/b', device: '{1}' },
        ],
        /topics\/1\/device refers to \{1\} but the filter has no wildcards/,
      ],
      [[{ filter: 'a/+', device: '{1}', bucket: '{0}' }], /topics\/0\/bucket refers to \{0\}/],
    ]
    for (const [m, message] of bad) assert.throws(() => TopicMapper.compile(m), message)
  })

  it('keeps text that is not a placeholder', () => {
    const m = TopicMapper.compile([{ filter: 'x/+', device: 'a{b}-{1}' }])
    assert.deepEqual(m.match('x/7'), { device: 'a_b_-7', mapping: 0 })
  })

  it('with no mappings every topic stays local', () => {
    const m = TopicMapper.compile([])
    assert.equal(m.size, 0)
    assert.equal(m.match('devices/a/data'), undefined)
  })
})
