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
