// A visible link to `url`; when the visible nav has none, one is added at the top of the content.
url => {
  const found = [...document.querySelectorAll("a[href]")].find(a => a.href === url && a.checkVisibility());
  if (found) return found;
  const a = Object.assign(document.createElement("a"), {href: url, textContent: "go"});
  document.querySelector("article").prepend(a);
  return a;
}
