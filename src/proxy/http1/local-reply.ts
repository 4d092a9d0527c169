// SPDX-License-Identifier: Apache-2.0
/** Responses the proxy writes itself (errors, policy answers, direct responses). */

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  301: 'Moved Permanently',
  302: 'Found',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function localResponse(status: number, body: string, headers: string, close: boolean): string {
  const text = STATUS_TEXT[status] ?? 'Response';
  return `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${headers}${close ? 'connection: close\r\n' : ''}\r\n${body}`;
}

/**
 * The extra header lines of a local reply ("name: value\r\n" each, as route()
 * writes a redirect's location) as HTTP/2 headers: names in lower case, as
 * HTTP/2 requires, and a repeated name kept as a list.
 */
export function headerFields(lines: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const line of lines.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const have = out[name];
    out[name] = have === undefined ? value : Array.isArray(have) ? [...have, value] : [have, value];
  }
  return out;
}
