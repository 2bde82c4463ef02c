// The developer's page (/dev): demo tokens minted by the node from its development key
// (POST /dev/token, fields in the query string), and links to the console with them.

const ROOM = "dock-7"; // the room `make serve` prints
const ROLES = {
  camera: { identity: "warehouse-cam-1", name: "Warehouse camera", grants: ["publish", "subscribe", "message"] },
  seller: { identity: "seller-1", name: "Seller", grants: ["subscribe", "message", "record"] },
};

/**
 * A token and the console's URL for it.
 * @param {{identity: string, room: string, grants: string[], name?: string}} fields
 * @returns {Promise<{token: string, url: string}>}
 */
export async function mint({ identity, room, grants, name }) {
  const query = new URLSearchParams({ identity, room, grants: grants.join(",") });
  if (name) query.set("name", name);
  const response = await fetch(`/dev/token?${query}`, { method: "POST" });
  if (!response.ok) throw new Error((await response.text()).trim() || `HTTP ${response.status}`);
  return response.json();
}

async function roles() {
  for (const [role, fields] of Object.entries(ROLES)) {
    const { token, url } = await mint({ ...fields, room: ROOM });
    const link = document.querySelector(`a[data-role=${role}]`);
    link.href = url;
    link.hidden = false;
    document.querySelector(`code[data-token=${role}]`).textContent = token;
  }
}

function form() {
  const el = document.getElementById("mint");
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(el);
    const error = document.getElementById("mint-error");
    error.hidden = true;
    try {
      const { token, url } = await mint({ identity: String(data.get("identity")).trim(), room: String(data.get("room")).trim(),
        name: String(data.get("name") || "").trim(), grants: data.getAll("grants").map(String) });
      document.getElementById("minted-link").href = url;
      document.getElementById("minted-token").textContent = token;
      document.getElementById("minted").hidden = false;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
}

form();
roles().catch((e) => {
  const error = document.getElementById("mint-error");
  error.textContent = `Could not mint the demo tokens: ${e.message}`;
  error.hidden = false;
});
