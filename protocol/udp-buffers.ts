/**
 * Socket buffer size for every UDP socket a proxy opens (relay listeners and upstreams, agent targets). Datagrams
 * that arrive while the event loop is busy wait in the kernel buffer; Linux's default (~208 KiB) overflows in
 * about 8 ms at 200 Mbit/s. The kernel caps the request at net.core.rmem_max / wmem_max.
 */
export const UDP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
