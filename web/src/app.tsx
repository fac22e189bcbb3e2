export function App() {
  return <h1>Tributary</h1>;
}
