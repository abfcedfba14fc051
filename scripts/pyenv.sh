# Sourced by the scripts: builds the fhec wheel (maturin, release profile: the same cargo build as the
# tests) and installs it, with the dependencies python/pyproject.toml lists (runtime and `test` extra),
# into the virtual environment target/pyenv. The environment holds only what the project installs:
# no system site-packages. Uses only the package registries. Sets $py to the environment's interpreter.
venv=target/pyenv
if [ -f "$venv/pyvenv.cfg" ] && grep -q "include-system-site-packages = true" "$venv/pyvenv.cfg"; then
  rm -rf "$venv"   # made by an older script, with the system's packages visible
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
rm -rf target/wheels
maturin build --release -q -m python/Cargo.toml -o target/wheels -i "$py"
wheel=$(ls target/wheels/fhec-*.whl)
"$py" -m pip install -q --disable-pip-version-check "${wheel}[test]"
"$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
