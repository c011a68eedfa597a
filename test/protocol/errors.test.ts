import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  PROTOCOL_ERROR_CODES,
  protocolError,
  RemoteError,
  TetherProtocolError,
} from '../../protocol/errors.ts'
import { WireErrorCode } from '../../protocol/messages.ts'

type Code = (typeof PROTOCOL_ERROR_CODES)[number]

/** Sample template arguments and the wire code each catalogue entry must carry. Adding a code fails until listed. */
const expected: Record<Code, { args: unknown[]; wireCode: number; message: RegExp }> = {
  TETHER_ERR_FRAME_TOO_LARGE: {
    args: [2000, 1024],
    wireCode: WireErrorCode.BAD_ENCODING,
    message: /2000 bytes exceeds the 1024-byte cap/,
  },
  TETHER_ERR_BAD_ENCODING: {
    args: ['truncated'],
    wireCode: WireErrorCode.BAD_ENCODING,
    message: /malformed frame: truncated/,
  },
  TETHER_ERR_UNKNOWN_TYPE: {
    args: [99],
    wireCode: WireErrorCode.BAD_ENCODING,
    message: /unknown message type 99/,
  },
  TETHER_ERR_PROTOCOL: {
    args: ['CONNECT must come first'],
    wireCode: WireErrorCode.PROTOCOL_VIOLATION,
    message: /protocol violation: CONNECT must come first/,
  },
  TETHER_ERR_REQUEST_TIMEOUT: {
    args: ['RUN $data', 50],
    wireCode: WireErrorCode.REQUEST_TIMEOUT,
    message: /RUN \$data got no reply within 50 ms/,
  },
  TETHER_ERR_BAD_CREDENTIALS: {
    args: [],
    wireCode: WireErrorCode.BAD_CREDENTIALS,
    message: /bad credentials/,
  },
  TETHER_ERR_DEVICE_DISABLED: {
    args: [],
    wireCode: WireErrorCode.DEVICE_DISABLED,
    message: /device disabled/,
  },
  TETHER_ERR_REPLACED: {
    args: [],
    wireCode: WireErrorCode.REPLACED,
    message: /replaced by a newer connection/,
  },
  TETHER_ERR_LINK_CLOSED: {
    args: ['peer went away'],
    wireCode: WireErrorCode.LINK_CLOSED,
    message: /link closed: peer went away/,
  },
}

/** protocolError with the per-code argument typing erased, so the table can drive it. */
const build = protocolError as (code: Code, ...args: unknown[]) => TetherProtocolError

describe('PROTOCOL_ERROR_CODES', () => {
  it('are unique and all start with TETHER_ERR_', () => {
    assert.ok(PROTOCOL_ERROR_CODES.length > 0)
    assert.equal(new Set(PROTOCOL_ERROR_CODES).size, PROTOCOL_ERROR_CODES.length)
    for (const code of PROTOCOL_ERROR_CODES) assert.match(code, /^TETHER_ERR_[A-Z_]+$/)
  })

  it('are exactly the codes this test knows about', () => {
    assert.deepEqual([...PROTOCOL_ERROR_CODES].sort(), Object.keys(expected).sort())
  })

  it('only use wire codes from WireErrorCode', () => {
    const wireCodes = new Set<number>(Object.values(WireErrorCode))
    for (const code of PROTOCOL_ERROR_CODES)
      assert.ok(wireCodes.has(build(code, ...expected[code].args).wireCode))
  })

  for (const code of PROTOCOL_ERROR_CODES) {
    it(`${code} builds a TetherProtocolError whose name is its code`, () => {
      const { args, wireCode, message } = expected[code]
      const err = build(code, ...args)
      assert.ok(err instanceof TetherProtocolError)
      assert.ok(err instanceof Error)
      assert.equal(err.name, err.code)
      assert.equal(err.code, code)
      assert.equal(err.wireCode, wireCode)
      assert.match(err.message, message)
      assert.doesNotMatch(err.message, /undefined/)
      assert.match(String(err), new RegExp(`^${code}: `))
      assert.equal(typeof err.stack, 'string')
    })
  }
})

describe('TetherProtocolError', () => {
  it('keeps a cause passed in the options', () => {
    const cause = new Error('inner')
    const err = new TetherProtocolError('TETHER_ERR_BAD_ENCODING', 4, 'outer', { cause })
    assert.equal(err.cause, cause)
    assert.equal(err.name, 'TETHER_ERR_BAD_ENCODING')
  })
})

describe('RemoteError', () => {
  it('carries the peer wire code and message under a stable code', () => {
    const err = new RemoteError(WireErrorCode.BAD_CREDENTIALS, 'bad credentials')
    assert.ok(err instanceof Error)
    assert.ok(!(err instanceof TetherProtocolError))
    assert.equal(err.name, 'RemoteError')
    assert.equal(err.code, 'TETHER_ERR_REMOTE')
    assert.equal(err.wireCode, 2)
    assert.equal(err.message, 'bad credentials')
  })
})
