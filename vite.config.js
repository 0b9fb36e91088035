// Bundles the image viewer (frontend/viewer) into static/build/, which Django serves as static files.
// `npm run build` (run by `make install`) writes it; the folder is generated, never committed.
// vtk.js (under @cornerstonejs/core) reaches xmlbuilder2, whose classes extend Node's EventEmitter: the
// `events` devDependency is its browser build, found by Vite instead of an empty stub for the Node builtin.
import { defineConfig } from "vite";

export default defineConfig({
  // relative asset URLs: the bundle works under whatever STATIC_URL (and hashed name) Django gives it
  base: "./",
  publicDir: false,
  logLevel: "error",  // the codecs' Node-only imports (fs, path) are externalized on purpose: no warning per file
  build: {
    outDir: "static/build",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      // viewer-preload: a few KB the page loads first, to start the DICOMweb requests while the viewer loads
      input: { viewer: "frontend/viewer/main.js", "viewer-preload": "frontend/viewer/preload.js" },
      output: {
        entryFileNames: "[name].js",  // a fixed name the template's {% static %} can find
        chunkFileNames: "chunks/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  worker: { format: "es" },
});
