// A TLS front for the S2 emulator, for the S2 client's TLS tests:
//   node tls_proxy.mjs KEY_PEM CERT_PEM UPSTREAM_PORT
// Prints TLS_URL=https://localhost:N once listening. Connections that did not
// send SNI "localhost" are dropped, so a working request proves SNI was sent.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const [keyFile, certFile, upstreamPort] = process.argv.slice(2);
const server = https.createServer(
  { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) },
  (req, res) => {
    const up = http.request(
      { host: '127.0.0.1', port: Number(upstreamPort), method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  },
);
server.on('secureConnection', (socket) => {
  if (socket.servername !== 'localhost') socket.destroy();
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`TLS_URL=https://localhost:${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
