// SPDX-License-Identifier: Apache-2.0
/**
 * The server name (SNI) of a TLS ClientHello, read from the first bytes
 * without terminating TLS: the connection itself is passed through as TCP.
 * RFC 8446 4.1.2 and RFC 6066 3.
 */
export function sniOf(b: Buffer): string | undefined {
  try {
    if (b.length < 5 || b[0] !== 0x16) return undefined;
    let p = 5; // record header
    if (b[p] !== 0x01) return undefined; // ClientHello
    p += 4; // handshake type + length
    p += 2 + 32; // client version + random
    p += 1 + b[p]!; // session id
    p += 2 + b.readUInt16BE(p); // cipher suites
    p += 1 + b[p]!; // compression methods
    const extEnd = p + 2 + b.readUInt16BE(p);
    p += 2;
    while (p + 4 <= extEnd && p + 4 <= b.length) {
      const type = b.readUInt16BE(p);
      const len = b.readUInt16BE(p + 2);
      p += 4;
      if (type === 0) {
        // server_name list: length(2), then entries of type(1) length(2) name
        let q = p + 2;
        while (q + 3 <= p + len) {
          const nameType = b[q]!;
          const nameLen = b.readUInt16BE(q + 1);
          if (nameType === 0) return b.toString('ascii', q + 3, q + 3 + nameLen);
          q += 3 + nameLen;
        }
        return undefined;
      }
      p += len;
    }
  } catch {
    /* a truncated or odd hello: no name */
  }
  return undefined;
}
