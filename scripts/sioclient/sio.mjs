// A socket.io v4 client driven by the gateway's tests: it connects with
// the options given as JSON, prints one JSON line per thing that happens
// (connect, connect_error, disconnect, upgrade, every server event, every
// acknowledgement) and takes commands, one JSON line each, on stdin:
//   {"emit":"process","arg":{"orderNo":"..."},"ack":true,"tag":"p1"}
//   {"close":true}
// Usage: node sio.mjs <url> '<options json>'
import { io } from 'socket.io-client';
import readline from 'node:readline';

const [url, opts] = [process.argv[2], JSON.parse(process.argv[3] || '{}')];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const socket = io(url, opts);

socket.on('connect', () => out({ type: 'connect', id: socket.id, recovered: socket.recovered, transport: socket.io.engine.transport.name }));
socket.on('connect_error', (err) => out({ type: 'connect_error', message: err.message, data: err.data ?? null }));
socket.on('disconnect', (reason) => out({ type: 'disconnect', reason }));
socket.io.on('open', () => socket.io.engine.on('upgrade', (t) => out({ type: 'upgrade', transport: t.name })));
socket.onAny((event, ...args) => out({ type: 'event', event, args }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.close) {
    socket.close();
    out({ type: 'closed' });
    return;
  }
  if (cmd.auth) {
    socket.auth = cmd.auth;
    socket.connect();
    return;
  }
  if (cmd.ack) {
    socket.emit(cmd.emit, cmd.arg, (res) => out({ type: 'ack', tag: cmd.tag, res }));
  } else if (cmd.arg !== undefined) {
    socket.emit(cmd.emit, cmd.arg);
  } else {
    socket.emit(cmd.emit);
  }
});
process.stdin.on('end', () => { socket.close(); process.exit(0); });
