/* The web upload drop zone (templates/intake/upload.html, #dropzone).

   Every file goes as its own request: the raw file as the body, its path in X-File-Name. Folders are walked
   (drag and drop, or the folder picker); a .zip is sent whole and unpacked by the server. At most three
   requests run at once; a request that fails on the network or with a server error is sent again after a
   growing pause, which is safe because the server answers a file it already has as a duplicate. The server
   answers one JSON line per file filed and ends with {"done": true}; an answer without it is retried too.
   The "Finish upload" button (an htmx form) stays disabled while anything is in flight. */
(function () {
  "use strict";

  const CONCURRENCY = 3;
  const ATTEMPTS = 6;            // the first try and five retries
  const MAX_PAUSE_S = 30;

  function parseLines(text) {
    const lines = [];
    for (const raw of text.split("\n")) {
      if (!raw.trim()) continue;
      try { lines.push(JSON.parse(raw)); } catch (e) { /* the last line may still be arriving */ }
    }
    return lines;
  }

  function sizeText(bytes) {
    const units = ["bytes", "KB", "MB", "GB"];
    let i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
    return i ? bytes.toFixed(1) + " " + units[i] : bytes + " bytes";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  class Uploader {
    constructor(zone) {
      this.zone = zone;
      this.url = zone.dataset.filesUrl;
      this.maxFile = Number(zone.dataset.maxFileBytes);
      this.maxArchive = Number(zone.dataset.maxArchiveBytes);
      this.csrf = zone.querySelector("input[name=csrfmiddlewaretoken]").value;
      this.list = zone.querySelector(".upload-files");
      this.summary = zone.querySelector(".upload-summary");
      this.overall = zone.querySelector("progress.overall");
      this.items = [];
      this.queue = [];
      this.active = 0;
      this.waiting = 0;          // items pausing before a retry
      this.counts = {accepted: 0, duplicate: 0, rejected: 0};
      this.bind();
      this.refresh();
    }

    bind() {
      const target = this.zone.querySelector(".drop-target");
      for (const input of this.zone.querySelectorAll("input[type=file]")) {
        input.addEventListener("change", () => {
          for (const file of input.files) this.add(file, file.webkitRelativePath || file.name);
          input.value = "";
        });
      }
      target.addEventListener("dragover", (event) => {
        event.preventDefault();
        target.classList.add("over");
      });
      target.addEventListener("dragleave", () => target.classList.remove("over"));
      target.addEventListener("drop", (event) => {
        event.preventDefault();
        target.classList.remove("over");
        // the item list is only readable during the event: take every entry now, walk folders afterwards
        const entries = Array.from(event.dataTransfer.items || [])
          .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null)).filter(Boolean);
        const loose = entries.length ? [] : Array.from(event.dataTransfer.files);
        (async () => {
          for (const entry of entries) await this.walk(entry, "");
          for (const file of loose) this.add(file, file.name);
        })();
      });
      window.addEventListener("beforeunload", (event) => {
        if (this.busy() && document.body.contains(this.zone)) {
          event.preventDefault();
          event.returnValue = "";
        }
      });
    }

    async walk(entry, prefix) {
      if (entry.isFile) {
        const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
        this.add(file, prefix + entry.name);
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        let batch;
        do {  // readEntries hands out a folder's entries in batches of at most 100
          batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
          for (const child of batch) await this.walk(child, prefix + entry.name + "/");
        } while (batch.length);
      }
    }

    add(file, name) {
      const row = el("li", "upload-file");
      row.dataset.state = "queued";
      const head = el("div", "file-head");
      head.append(el("span", "file-name", name), el("span", "file-size", sizeText(file.size)));
      const bar = el("progress", "file-progress");
      bar.max = 1;
      bar.value = 0;
      bar.setAttribute("aria-label", name);
      const status = el("div", "file-status", "waiting to be sent");
      row.append(head, bar, status);
      this.list.append(row);
      const item = {file, name, row, bar, status, attempts: 0, sent: 0, results: []};
      this.items.push(item);
      this.queue.push(item);
      this.pump();
    }

    busy() {
      return this.active > 0 || this.queue.length > 0 || this.waiting > 0;
    }

    pump() {
      while (this.active < CONCURRENCY && this.queue.length) {
        this.active += 1;
        this.send(this.queue.shift());
      }
      this.refresh();
    }

    limitFor(item) {
      return item.name.toLowerCase().endsWith(".zip") ? this.maxArchive : this.maxFile;
    }

    send(item) {
      item.attempts += 1;
      this.state(item, "sending", item.attempts > 1 ? `sending again (attempt ${item.attempts} of ${ATTEMPTS})` : "sending");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.url);
      xhr.setRequestHeader("X-CSRFToken", this.csrf);
      xhr.setRequestHeader("X-File-Name", encodeURIComponent(item.name));
      xhr.setRequestHeader("X-File-Size", String(item.file.size));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        item.sent = event.loaded;
        item.bar.value = event.total ? event.loaded / event.total : 1;
        this.refresh();
      });
      xhr.upload.addEventListener("load", () => {
        item.sent = item.file.size;
        item.bar.value = 1;
        this.state(item, "filing", "received by the server, filing…");
        this.refresh();
      });
      xhr.addEventListener("progress", () => {  // a large archive reports its members as they are filed
        const filed = parseLines(xhr.responseText).filter((line) => line.outcome).length;
        if (filed) this.state(item, "filing", `filing… ${filed} file${filed === 1 ? "" : "s"} done`);
      });
      xhr.addEventListener("load", () => this.answered(item, xhr));
      xhr.addEventListener("error", () => this.retry(item, "network error"));
      xhr.addEventListener("timeout", () => this.retry(item, "the request timed out"));
      xhr.addEventListener("abort", () => this.retry(item, "the request was cut off"));
      // a file the server will refuse for its size is announced, not sent: no point moving gigabytes
      xhr.send(item.file.size > this.limitFor(item) ? null : item.file);
    }

    answered(item, xhr) {
      const lines = parseLines(xhr.responseText);
      if (lines.some((line) => line.done)) {
        item.results = lines.filter((line) => line.outcome);
        this.done(item);
      } else if (xhr.status >= 500 || xhr.status === 408 || xhr.status === 429 || xhr.status < 400) {
        // 5xx, or a reply cut off before "done": what was filed stays filed, the rest comes on the next try
        this.retry(item, xhr.status >= 400 ? `server error ${xhr.status}` : "the reply was cut off");
      } else {
        const detail = lines.find((line) => line.detail);
        this.fail(item, detail ? detail.detail : `refused by the server (HTTP ${xhr.status})`);
      }
    }

    retry(item, why) {
      item.sent = 0;
      item.bar.value = 0;
      if (item.attempts >= ATTEMPTS) {
        this.fail(item, `${why}; gave up after ${ATTEMPTS} attempts`);
        return;
      }
      this.active -= 1;
      const pause = Math.min(MAX_PAUSE_S, 2 ** (item.attempts - 1)) * (0.75 + Math.random() / 2);
      this.state(item, "waiting", `${why}: sending again in ${Math.round(pause)} s`);
      this.waiting += 1;
      setTimeout(() => {
        this.waiting -= 1;
        this.queue.unshift(item);
        this.pump();
      }, pause * 1000);
      this.pump();
    }

    fail(item, why) {
      this.active -= 1;
      this.state(item, "failed", `not sent: ${why}`);
      const again = el("button", "retry", "Send again");
      again.type = "button";
      again.addEventListener("click", () => {
        again.remove();
        item.attempts = 0;
        this.queue.push(item);
        this.pump();
      });
      item.status.append(" ", again);
      this.pump();
    }

    done(item) {
      this.active -= 1;
      for (const line of item.results) this.counts[line.outcome] = (this.counts[line.outcome] || 0) + 1;
      const tally = {accepted: 0, duplicate: 0, rejected: 0};
      for (const line of item.results) tally[line.outcome] = (tally[line.outcome] || 0) + 1;
      const single = item.results.length === 1 && item.results[0].file === item.name;
      let outcome = "accepted";
      if (tally.rejected) outcome = "rejected";
      else if (tally.duplicate && !tally.accepted) outcome = "duplicate";
      item.row.dataset.outcome = outcome;
      if (single) {
        const line = item.results[0];
        this.state(item, "done", line.reason ? `${line.outcome}: ${line.reason}` : line.outcome);
      } else {
        const parts = Object.entries(tally).filter(([, n]) => n).map(([what, n]) => `${n} ${what}`);
        this.state(item, "done", `${item.results.length} files: ${parts.join(", ") || "none"}`);
        const notes = el("ul", "member-outcomes");
        for (const line of item.results) {
          if (line.outcome === "accepted") continue;
          const note = el("li", line.outcome);
          note.append(el("span", "file-name", line.file), document.createTextNode(` ${line.outcome}: ${line.reason}`));
          notes.append(note);
        }
        if (notes.children.length) item.row.append(notes);
      }
      this.pump();
    }

    state(item, state, text) {
      item.row.dataset.state = state;
      item.status.textContent = text;
    }

    refresh() {
      const total = this.items.reduce((sum, item) => sum + item.file.size, 0);
      const sent = this.items.reduce((sum, item) => sum + (item.row.dataset.state === "done" ? item.file.size : item.sent), 0);
      this.overall.value = total ? sent / total : 0;
      const finished = this.items.filter((item) => item.row.dataset.state === "done").length;
      const failed = this.items.filter((item) => item.row.dataset.state === "failed").length;
      if (!this.items.length) {
        this.summary.textContent = "No file chosen yet.";
      } else {
        const c = this.counts;
        this.summary.textContent = `${finished} of ${this.items.length} sent (${sizeText(sent)} of ${sizeText(total)}) · ` +
          `${c.accepted} accepted · ${c.duplicate} duplicate · ${c.rejected} rejected` +
          (failed ? ` · ${failed} could not be sent: send them again, or finish without them` : "") +
          (this.busy() ? "" : " · all sent");
      }
      this.zone.dataset.busy = this.busy() ? "true" : "false";
      const finish = document.querySelector(".upload-finish button");
      if (finish) finish.disabled = this.busy();
    }
  }

  function scan(root) {
    const zones = root.matches && root.matches("[data-upload]") ? [root] : [];
    zones.push(...(root.querySelectorAll ? root.querySelectorAll("[data-upload]") : []));
    for (const zone of zones) {
      if (zone.dataset.ready) continue;
      zone.dataset.ready = "true";
      zone.uploader = new Uploader(zone);
    }
  }

  document.addEventListener("DOMContentLoaded", () => scan(document));
  // htmx swaps the drop zone in after the form is sent
  document.addEventListener("htmx:load", (event) => scan(event.target));
})();
