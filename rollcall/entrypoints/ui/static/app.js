// Rollcall's pages: the notification pop-up and the confirmation dialogs. The pages
// work without this file (a form sent unconfirmed answers with a confirmation page).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const bell = document.getElementById("bell");
  const panel = document.getElementById("bell-panel");
  if (bell && panel) {
    const show = (open) => {
      panel.hidden = !open;
      bell.setAttribute("aria-expanded", String(open));
      if (open) {
        const first = panel.querySelector("button, a");
        if (first) first.focus();
      }
    };
    bell.addEventListener("click", () => show(panel.hidden));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !panel.hidden) {
        show(false);
        bell.focus();
      }
    });
  }

  // A form with data-confirm="ID" (or data-confirm-by="FIELD": the dialog
  // "confirm-" + the chosen value) asks in that dialog before it is sent confirmed,
  // naming the warnings shown (the server asks again if there are others by then).
  for (const form of document.querySelectorAll("form[data-confirm], form[data-confirm-by]")) {
    form.addEventListener("submit", (event) => {
      const confirm = form.querySelector("input[name=confirm]");
      if (confirm && confirm.value === "true") return;
      let id = form.dataset.confirm;
      if (form.dataset.confirmBy) {
        const chosen = form.querySelector(`input[name=${form.dataset.confirmBy}]:checked`);
        if (!chosen) return;
        id = `confirm-${chosen.value}`;
      }
      const dialog = document.getElementById(id);
      if (!dialog || typeof dialog.showModal !== "function") return;
      event.preventDefault();
      const opener = event.submitter || document.activeElement;
      dialog.showModal();
      dialog.querySelector("[data-dialog=confirm]").onclick = () => {
        if (confirm) confirm.value = "true";
        const seen = form.querySelector("input[name=seen]");
        if (seen) seen.value = dialog.dataset.codes || "";
        dialog.close();
        form.submit();
      };
      dialog.querySelector("[data-dialog=cancel]").onclick = () => {
        dialog.close();
        if (opener) opener.focus();
      };
    });
  }
});
