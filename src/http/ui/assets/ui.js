// wharf's web UI: copy buttons and delete confirmations. No framework, no build step.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const text = button.dataset.copy;
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // Plain HTTP on a non-local address has no clipboard API: select the text instead, for Ctrl+C.
    const code = document.getElementById(button.dataset.for);
    if (code) window.getSelection().selectAllChildren(code);
    button.textContent = "Press Ctrl+C";
    return;
  }
  button.textContent = "Copied";
  button.classList.add("done");
  setTimeout(() => { button.textContent = "Copy"; button.classList.remove("done"); }, 2000);
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
