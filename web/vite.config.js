import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  // Relative asset paths: the same build works from a bucket's root, a
  // CloudFront distribution or a local folder.
  base: "./",
  // amazon-cognito-identity-js was written for Node and reads `global`.
  define: { global: "globalThis" },
  build: {
    target: "es2022",
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      input: { shop: resolve(import.meta.dirname, "index.html"), admin: resolve(import.meta.dirname, "admin.html") },
    },
  },
});
