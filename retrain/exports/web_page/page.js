// Classifies a photo in the browser with the model retrain exported, offline: the model,
// the runtime (onnxruntime-web) and this page all come from this folder.
//
// The model takes the decoded pixels at their own size (uint8 [1, height, width, 3], RGB)
// and scales and resizes them itself, as retrain did in training, so the page only
// decodes. index.html?image=NAME classifies NAME (a file of this folder) on load and
// writes {"predictions": [{"label", "score"}, ...], "unknown": ...} into #result.

const config = await (await fetch("config.json")).json();
document.getElementById("title").textContent = config.title;
ort.env.wasm.numThreads = 1;  // No worker threads: a plain static server is enough.
ort.env.wasm.wasmPaths = new URL("./", location.href).href;
const session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
const status = document.getElementById("status");
status.textContent = `Ready: ${config.labels.length} classes.`;

function pixelsOf(image) {
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = new Uint8Array(canvas.width * canvas.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  return new ort.Tensor("uint8", rgb, [1, canvas.height, canvas.width, 3]);
}

function calibrated(scores) {
  // softmax(log(scores) / temperature), the model's calibration.
  if (config.temperature === null) return scores;
  const logs = scores.map((s) => Math.log(Math.max(s, 1e-30)) / config.temperature);
  const top = Math.max(...logs);
  const exps = logs.map((l) => Math.exp(l - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

async function classify(image) {
  const outputs = await session.run({ [session.inputNames[0]]: pixelsOf(image) });
  const scores = Array.from(outputs.scores.data);
  const ranked = scores.map((score, index) => ({ label: config.labels[index], score }))
    .sort((a, b) => b.score - a.score).slice(0, config.top_k);
  const confidence = Math.max(...calibrated(scores));
  const unknown = config.unknown_threshold !== null && confidence < config.unknown_threshold;
  const answers = document.getElementById("answers");
  answers.replaceChildren(...ranked.map(({ label, score }) => {
    const item = document.createElement("li");
    item.textContent = `${label} `;
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(4);
    item.append(value);
    return item;
  }));
  document.getElementById("unknown").hidden = !unknown;
  return { predictions: ranked, unknown };
}

function show(url) {
  return new Promise((resolve, reject) => {
    const photo = document.getElementById("photo");
    photo.onload = () => resolve(photo);
    photo.onerror = () => reject(new Error(`cannot show ${url}`));
    photo.src = url;
  });
}

async function classifyFile(file) {
  status.textContent = `Classifying ${file.name}...`;
  await classify(await show(URL.createObjectURL(file)));
  status.textContent = file.name;
}

document.getElementById("file").addEventListener("change", (event) => {
  if (event.target.files.length) classifyFile(event.target.files[0]);
});
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) classifyFile(event.dataTransfer.files[0]);
});

const named = new URLSearchParams(location.search).get("image");
if (named) {
  try {
    const answer = await classify(await show(named));
    document.getElementById("result").textContent = JSON.stringify(answer);
    status.textContent = named;
  } catch (error) {
    document.getElementById("result").textContent = JSON.stringify({ error: String(error) });
  }
}
