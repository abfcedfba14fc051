# Sourced by the scripts: builds the fhec wheel (maturin, release profile: the same cargo build as the
# tests) and installs it with its dependencies into the virtual environment target/pyenv.
# Uses only the package registries. Sets $py to the environment's interpreter.
venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check numpy scikit-learn tqdm xgboost-cpu lightgbm pytest
rm -rf target/wheels
maturin build --release -q -m python/Cargo.toml -o target/wheels -i "$py"
"$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/fhec-*.whl
