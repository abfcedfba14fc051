"""scikit-learn estimators whose predictions run on encrypted data.

    from fhec.sklearn import LogisticRegression
    model = LogisticRegression(n_bits=8).fit(X_train, y_train)
    model.compile(X_train)
    y = model.predict(X_test, fhe="execute")   # or "disable" (quantised, clear), "simulate"

Every estimator takes the parameters of its scikit-learn namesake plus ``n_bits``, and works with
``clone``, ``Pipeline`` and ``GridSearchCV``. The three fhe modes give identical results. See
``docs/python.md``.
"""

from ._base import Decrypted
from ._linear import (
    ESTIMATORS,
    ElasticNet,
    GammaRegressor,
    Lasso,
    LinearRegression,
    LinearSVC,
    LinearSVR,
    LogisticRegression,
    NotCompiledError,
    PoissonRegressor,
    Ridge,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
    load,
    loads,
)
from ._nn import NeuralNetClassifier, NeuralNetRegressor
from ._quant import InputRangeWarning
from ._trees import (
    TREE_ESTIMATORS,
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

if "XGBClassifier" in TREE_ESTIMATORS:
    XGBClassifier = TREE_ESTIMATORS["XGBClassifier"]
    XGBRegressor = TREE_ESTIMATORS["XGBRegressor"]
if "LGBMClassifier" in TREE_ESTIMATORS:
    LGBMClassifier = TREE_ESTIMATORS["LGBMClassifier"]
    LGBMRegressor = TREE_ESTIMATORS["LGBMRegressor"]

__all__ = [
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "TREE_ESTIMATORS",
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "ElasticNet",
    "GammaRegressor",
    "Lasso",
    "LinearRegression",
    "LinearSVC",
    "LinearSVR",
    "LogisticRegression",
    "PoissonRegressor",
    "Ridge",
    "SGDClassifier",
    "SGDRegressor",
    "TweedieRegressor",
    "ESTIMATORS",
    "InputRangeWarning",
    "NotCompiledError",
    "Decrypted",
    "load",
    "loads",
]
