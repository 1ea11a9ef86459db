/**
 * The console's shell: the login page until a token is known and its role fetched, then the
 * navigation and the page the hash names.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, whenUnauthorized } from "./api.js";
import { RoleContext } from "./context.js";
import { href, useRoute } from "./router.js";
import { forgetToken, savedToken, type Role } from "./session.js";
import { Login } from "./pages/login.js";
import { ImagesPage } from "./pages/images.js";
import { ImagePage } from "./pages/image.js";
import { JobsPage } from "./pages/jobs.js";
import { JobPage } from "./pages/job.js";
import { NewJobPage } from "./pages/new-job.js";
import { RecipesPage } from "./pages/recipes.js";
import { RecipePage } from "./pages/recipe.js";
import { NewRecipePage } from "./pages/new-recipe.js";
import { KeysPage } from "./pages/keys.js";
import { DeletedPage } from "./pages/deleted.js";
import { ServicePage } from "./pages/service.js";
import { NodesPage } from "./pages/nodes.js";

const NAV: Array<[string, string]> = [
  ["images", "Images"],
  ["jobs", "Jobs"],
  ["recipes", "Recipes"],
  ["keys", "Public keys"],
  ["deleted", "Deleted"],
  ["nodes", "Build nodes"],
  ["service", "Service"],
];

function Page(props: { route: string[] }) {
  const [section, id] = props.route;
  switch (section) {
    case "jobs":
      return id === "new" ? <NewJobPage /> : id ? <JobPage id={id} /> : <JobsPage />;
    case "recipes":
      return id === "new" ? <NewRecipePage /> : id ? <RecipePage id={id} /> : <RecipesPage />;
    case "keys":
      return <KeysPage />;
    case "deleted":
      return <DeletedPage />;
    case "service":
      return <ServicePage />;
    case "nodes":
      return <NodesPage />;
    default:
      return id ? <ImagePage id={id} /> : <ImagesPage />;
  }
}


function App() {
  const [role, setRole] = useState<Role | undefined>(undefined);
  const [checking, setChecking] = useState(savedToken() !== null);
  const route = useRoute();
  const logout = () => {
    forgetToken();
    setRole(undefined);
  };
  useEffect(() => {
    whenUnauthorized(logout);
    // A reload keeps the tab's token: ask for its role again (it may have been revoked).
    if (savedToken() === null) return;
    api<{ role: Role }>("GET", "/v3/whoami").then(
      (r) => (setRole(r.role), setChecking(false)),
      () => (logout(), setChecking(false)),
    );
  }, []);
  if (checking) return <p>Loading…</p>;
  if (!role) return <Login onLogin={setRole} />;
  const section = route[0] ?? "images";
  return (
    <RoleContext.Provider value={role}>
      <header>
        <span class="brand">Kiln</span>
        <nav aria-label="Sections">
          {NAV.map(([k, label]) => (
            <a href={href(k)} aria-current={section === k ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class="who">
          {role} token{" "}
          <button type="button" onClick={logout}>
            Log out
          </button>
        </span>
      </header>
      <main>
        <Page route={route} />
      </main>
    </RoleContext.Provider>
  );
}

render(<App />, document.getElementById("app")!);
