// The web page's client: text -> /stream (WebSocket), audio chunks -> Web Audio as they arrive.
// Protocol: espnet2_sled/serve/protocol.py. Binary frames are 16-bit little-endian PCM, mono.
// A server started with --api_key needs the page opened as /?api_key=KEY.
"use strict";

const $ = (id) => document.getElementById(id);
const apiKey = new URLSearchParams(location.search).get("api_key");
const keyHeaders = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
let audioContext = null;
let socket = null;
let received = [];  // this utterance's PCM chunks (Int16Array), for the waveform and the download
// what was handed to Web Audio, drawn and offered (read by tests/server/test_browser.py)
window.sledPlayer = { scheduled: 0, scheduledSeconds: 0, contextState: () => audioContext && audioContext.state,
                      drawnSamples: 0, download: null };

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text || state;
}

fetch("/info").then((r) => r.json()).then((info) => {
  $("model").textContent = `${info.model}: ${info.sample_rate} Hz, ${info.latent.name} latent, ` +
    `${info.streaming.layout} layout, ${info.streaming.frames_per_chunk} frames ` +
    `(${info.streaming.chunk_seconds.toFixed(2)} s) per chunk`;
}).catch((e) => { $("model").textContent = `no server info: ${e}`; });

fetch("/v1/audio/voices", { headers: keyHeaders }).then((r) => r.json()).then((list) => {
  $("voice").replaceChildren(...list.voices.map((v) => {
    const option = document.createElement("option");
    option.value = v.id;
    option.textContent = v.prompted ? `${v.id} (${v.seconds} s prompt)` : `${v.id} (the model's own voice)`;
    option.selected = v.id === list.default;
    return option;
  }));
}).catch((e) => { $("error").textContent = `no voice list: ${e}`; });

function drawWaveform(sampleRate) {
  // min/max of the samples under each pixel column; the time axis grows past 5 s as audio arrives
  const canvas = $("waveform"), context = canvas.getContext("2d");
  const total = received.reduce((n, c) => n + c.length, 0);
  const perColumn = Math.max(1, Math.ceil(Math.max(total, 5 * sampleRate) / canvas.width));
  const middle = canvas.height / 2;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = "#2a6";
  let column = 0, low = 0, high = 0, inColumn = 0;
  for (const chunk of received) {
    for (let i = 0; i < chunk.length; i++) {
      low = Math.min(low, chunk[i]);
      high = Math.max(high, chunk[i]);
      if (++inColumn === perColumn) {
        context.fillRect(column++, middle - high / 32768 * middle, 1, Math.max(1, (high - low) / 32768 * middle));
        low = high = inColumn = 0;
      }
    }
  }
  window.sledPlayer.drawnSamples = total;
}

function wavBlob(sampleRate) {
  // the received samples as a 16-bit mono WAV file (what the server sent, unchanged)
  const samples = received.reduce((n, c) => n + c.length, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((ch, i) => header.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + 2 * samples, true); text(8, "WAVEfmt ");
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, sampleRate, true); header.setUint32(28, 2 * sampleRate, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true);
  text(36, "data"); header.setUint32(40, 2 * samples, true);
  return new Blob([header, ...received], { type: "audio/wav" });
}

function readPrompt() {
  const file = $("prompt-audio").files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.split(",", 2)[1]);  // data URL -> base64
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function speak() {
  if (socket) socket.close();
  // Busy at once, before the first await: the state of the previous run ("done") must not
  // be read as this run's (a second click in the browser test read the old "done").
  setState("streaming", "starting");
  // created on the click (a user gesture), so browsers let it play
  audioContext = audioContext || new AudioContext();
  await audioContext.resume();
  const words = $("text").value.split(/(?<=\s)/);  // keep each word's trailing space
  const perMessage = Math.max(1, parseInt($("words-per-message").value || "1", 10));
  const first = {};
  for (const [id, key, parse] of [["seed", "seed", parseInt], ["cfg-scale", "cfg_scale", parseFloat],
                                   ["stop-threshold", "stop_threshold", parseFloat],
                                   ["max-frames", "max_frames", parseInt]]) {
    if ($(id).value !== "") first[key] = parse($(id).value);
  }
  const prompt = await readPrompt();
  if (prompt) { first.prompt_audio = prompt; first.prompt_text = $("prompt-text").value; }
  else if ($("voice").value !== "default") first.voice = $("voice").value;

  $("error").textContent = "";
  $("first-audio").textContent = "–";
  $("rtf").textContent = "–";
  $("chunks").textContent = "0";
  $("chunks-total").textContent = "?";
  $("audio-seconds").textContent = "0";
  window.sledPlayer.scheduled = 0;
  window.sledPlayer.scheduledSeconds = 0;
  received = [];
  $("download").hidden = true;
  if (window.sledPlayer.download) URL.revokeObjectURL(window.sledPlayer.download);
  window.sledPlayer.download = null;
  setState("streaming", "connecting");
  const started = performance.now();
  let sampleRate = 24000, chunks = 0, samples = 0, nextTime = 0, finished = false;

  const key = apiKey ? `?api_key=${encodeURIComponent(apiKey)}` : "";
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/stream${key}`;
  const ws = socket = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    setState("streaming", "streaming");
    for (let i = 0; i < words.length; i += perMessage) {
      const message = i === 0 ? first : {};
      message.text = words.slice(i, i + perMessage).join("");
      ws.send(JSON.stringify(message));
    }
    if (words.length === 0) ws.send(JSON.stringify(Object.assign(first, { text: "" })));
    ws.send(JSON.stringify({ end: true }));
  };
  ws.onmessage = (msg) => {
    if (typeof msg.data !== "string") {
      play(new Int16Array(msg.data));
      return;
    }
    const event = JSON.parse(msg.data);
    if (event.event === "ready") {
      sampleRate = event.sample_rate;
    } else if (event.event === "done") {
      finished = true;
      $("chunks-total").textContent = String(event.chunks);
      $("rtf").textContent = event.rtf === null ? "–" : event.rtf.toFixed(3);
      window.sledPlayer.download = $("download").href = URL.createObjectURL(wavBlob(sampleRate));
      $("download").hidden = false;
      setState("done", `done (${event.audio_seconds.toFixed(2)} s of audio)`);
    } else if (event.event === "error") {
      finished = true;
      $("error").textContent = `${event.error}: ${event.message}`;
      setState("error", `error ${event.code}`);
    }
  };
  ws.onclose = (e) => {
    if (!finished) {
      $("error").textContent = `connection closed (${e.code}) ${e.reason}`;
      setState("error", `closed ${e.code}`);
    }
  };

  function play(pcm) {
    chunks += 1;
    samples += pcm.length;
    if (chunks === 1) $("first-audio").textContent = String(Math.round(performance.now() - started));
    $("chunks").textContent = String(chunks);
    $("audio-seconds").textContent = (samples / sampleRate).toFixed(2);
    received.push(pcm);
    drawWaveform(sampleRate);
    if (pcm.length === 0) return;
    const buffer = audioContext.createBuffer(1, pcm.length, sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32767;  // inverse of the server's scaling
    const source = audioContext.createBufferSource();
    source.buffer = buffer;
    source.connect(audioContext.destination);
    nextTime = Math.max(nextTime, audioContext.currentTime + 0.05);  // gapless after the first chunk
    source.start(nextTime);
    nextTime += buffer.duration;
    window.sledPlayer.scheduled += 1;
    window.sledPlayer.scheduledSeconds += buffer.duration;
  }
}

$("speak").addEventListener("click", () => {
  speak().catch((e) => { $("error").textContent = String(e); setState("error", "error"); });
});
