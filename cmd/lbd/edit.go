package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"lbd/config"
	"lbd/internal/configfile"
)

const editUsage = `usage: lbd edit [--config FILE] [--socket PATH]

Opens the config in an editor ($EDITOR; default nano, else mg, else vi) on
a copy, and checks it when you save and quit. While it does not validate,
the editor reopens with the errors listed at the top as "# lbd edit:"
comment lines (LINE:COL as in the file; they are removed again before the
check) and the cursor on the first error. Saving it unchanged, or quitting
without saving, gives up: the file stays as it was and the exit status is 1.
A valid file replaces the config atomically (the config partition is
remounted read-write only for the write; a power cut leaves the old or the
new file), then lbd shows what the reload changes (lbd diff) and reloads.
`

// errMark starts the error lines put at the top of the buffer; only
// leading lines with it are stripped, so a user's own comments stay.
const errMark = "# lbd edit: "

func cmdEdit(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("edit", editUsage, stderr)
	file := fs.String("config", config.DefaultPath, "the config file to edit")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) > 0 {
		fs.Usage()
		return 2
	}
	path, err := filepath.Abs(*file)
	if err != nil {
		fmt.Fprintf(stderr, "lbd edit: %s: %v\n", *file, err)
		return 1
	}
	ed, err := editorCommand()
	if err != nil {
		fmt.Fprintln(stderr, "lbd edit:", err)
		return 1
	}
	return runEdit(path, *socket, ed, configfile.Writer{}, stdout, stderr)
}

// editorCommand is $EDITOR, else the first editor the image ships.
func editorCommand() (string, error) {
	if e := strings.TrimSpace(os.Getenv("EDITOR")); e != "" {
		return e, nil
	}
	for _, n := range []string{"nano", "mg", "vi"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no editor found (nano, mg, vi); set EDITOR")
}

func runEdit(path, socket, editor string, w configfile.Writer, stdout, stderr io.Writer) int {
	orig, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "lbd edit:", err)
		return 1
	}
	// The copy lives outside the config partition (read-only); on the
	// appliance /tmp may be on the read-only root, /run never is.
	tmpDir, err := os.MkdirTemp("", "lbd-edit-")
	if err != nil {
		if tmpDir, err = os.MkdirTemp("/run", "lbd-edit-"); err != nil {
			fmt.Fprintln(stderr, "lbd edit: no writable temp directory:", err)
			return 1
		}
	}
	keep := false // keep the copy when the user's work would be lost
	defer func() {
		if !keep {
			os.RemoveAll(tmpDir)
		}
	}()
	tmp := filepath.Join(tmpDir, filepath.Base(path)) // same name: editors pick TOML syntax

	buf := orig
	errs := validate(path, orig) // an already broken file opens with its errors
	for {
		head := errorHeader(path, errs)
		if err := os.WriteFile(tmp, append([]byte(head), buf...), 0o600); err != nil {
			fmt.Fprintln(stderr, "lbd edit:", err)
			return 1
		}
		line := 0
		if len(errs) > 0 {
			line = strings.Count(head, "\n") + max(errs[0].Pos.Line, 1)
		}
		if err := runEditor(editor, tmp, line); err != nil {
			fmt.Fprintf(stderr, "lbd edit: %s: %v; %s left unchanged\n", editor, err, path)
			return 1
		}
		raw, err := os.ReadFile(tmp)
		if err != nil {
			fmt.Fprintln(stderr, "lbd edit:", err)
			return 1
		}
		got := stripHeader(raw)
		if bytes.Equal(got, buf) {
			if len(errs) > 0 && !bytes.Equal(buf, orig) {
				keep = true
				fmt.Fprintf(stderr, "lbd edit: saved unchanged with errors: giving up; %s left unchanged (your edit is in %s)\n", path, tmp)
			} else {
				fmt.Fprintf(stderr, "lbd edit: no change; %s left unchanged\n", path)
			}
			return 1
		}
		buf, errs = got, validate(path, got)
		if len(errs) == 0 {
			break
		}
	}
	if bytes.Equal(buf, orig) {
		fmt.Fprintf(stderr, "lbd edit: no change; %s left unchanged\n", path)
		return 1
	}
	// Someone else (a second lbd edit, a remote copy) may have replaced
	// the file meanwhile; overwriting would silently drop their change.
	// The kept copy is the text as validated, without an error block the
	// last round's file may still start with.
	keepCopy := func() { keep = os.WriteFile(tmp, buf, 0o600) == nil }
	if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, orig) {
		keepCopy()
		fmt.Fprintf(stderr, "lbd edit: %s changed on disk while you edited; nothing written (your edit is in %s)\n", path, tmp)
		return 1
	}
	if err := w.Replace(path, buf); err != nil {
		keepCopy()
		fmt.Fprintf(stderr, "lbd edit: %v (your edit is in %s)\n", err, tmp)
		return 1
	}
	fmt.Fprintf(stdout, "lbd edit: %s written\n", path)
	if printDiff(socket, path, stdout, stderr) != 0 {
		fmt.Fprintf(stderr, "lbd edit: %s is saved but not reloaded; run 'lbd reload' once lbd runs\n", path)
		return 1
	}
	if snap, err := fetchStatus(socket); err == nil && snap.Config.Path != "" && !sameFile(snap.Config.Path, path) {
		fmt.Fprintf(stderr, "lbd edit: lbd runs %s, not %s: not reloading\n", snap.Config.Path, path)
		return 1
	}
	return cmdReload(socket, stdout, stderr)
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return os.SameFile(fa, fb)
}

// validate returns the config's errors, located when the parser knows
// where; nil when it is valid.
func validate(path string, data []byte) config.Errors {
	_, err := config.Parse(path, data)
	if err == nil {
		return nil
	}
	var es config.Errors
	if errors.As(err, &es) && len(es) > 0 {
		return es
	}
	return config.Errors{{File: path, Msg: err.Error()}}
}

// errorHeader is the comment block listing errs, "" when there are none.
// Line numbers are those of the file without the block, as lbd check and
// the daemon print them.
func errorHeader(path string, errs config.Errors) string {
	if len(errs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s does not validate (%d error(s)); fix and save, or save unchanged to give up.\n", errMark, filepath.Base(path), len(errs))
	fmt.Fprintf(&b, "%sThese lines are removed before the check; LINE:COL count from the line after them.\n", errMark)
	for _, e := range errs {
		msg := e.Msg
		if e.Path != "" {
			msg = e.Path + ": " + msg
		}
		msg = strings.ReplaceAll(msg, "\n", " ")
		if e.Pos.Line > 0 {
			fmt.Fprintf(&b, "%s%d:%d: %s\n", errMark, e.Pos.Line, e.Pos.Col, msg)
		} else {
			fmt.Fprintf(&b, "%s%s\n", errMark, msg)
		}
	}
	return b.String()
}

// stripHeader drops the leading errMark lines errorHeader added.
func stripHeader(data []byte) []byte {
	for bytes.HasPrefix(data, []byte(strings.TrimSpace(errMark))) {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		data = data[i+1:]
	}
	return data
}

// cursorEditors accept "+LINE FILE" to open with the cursor on LINE.
var cursorEditors = map[string]bool{"nano": true, "rnano": true, "vi": true, "vim": true, "nvim": true, "mg": true, "emacs": true, "jed": true, "joe": true, "micro": true}

// runEditor runs editor (a command line, as git runs $EDITOR: through the
// shell, so "nano -R" works) on the terminal. A non-zero exit is an abort.
func runEditor(editor, file string, line int) error {
	args := []string{"-c", editor + ` "$@"`, "sh"}
	if f := strings.Fields(editor); line > 0 && len(f) > 0 && cursorEditors[filepath.Base(f[0])] {
		args = append(args, fmt.Sprintf("+%d", line))
	}
	cmd := exec.Command("/bin/sh", append(args, file)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
