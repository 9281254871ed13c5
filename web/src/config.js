// Where the API and the user pool are: config.json beside the pages, written
// at deployment from the stack's outputs (scripts/stack.py web-config), so
// no address or pool id is built into the app.

export async function loadConfig() {
  const response = await fetch(new URL("config.json", document.baseURI), { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const config = await response.json();
  for (const key of ["apiUrl", "region", "userPoolId", "userPoolClientId", "adminConsoleClientId"]) {
    if (!config[key]) throw new Error(`config.json has no ${key}`);
  }
  return config;
}
