"""The schemas every model's document holds the same: an error, a class label and a
regressor's prediction as JSON carries them (of this model or one served before), an
optional number, and the columns of a stored row that do not depend on the contract.
"""

from model_service.openapi.builders import text

SHARED_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": {"type": "string"}},
    },
    "ClassLabel": {
        "description": text(
            """
            A class of a model, as JSON carries it: 0 and 1, false and true, "no" and "yes"...
            (stored rows and /stats may hold the classes of a model served before this one)
            """
        ),
        "type": ["string", "number", "boolean"],
    },
    "Prediction": {
        "description": "A regressor's number, or an object with a number for each target",
        "oneOf": [
            {"type": "number"},
            {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number"}},
        ],
    },
    "OptionalNumber": {
        "description": "A finite number, or null (also NaN or absent) for a missing value",
        "type": ["number", "null"],
    },
}
STORED_ROW_DESCRIPTION = text(
    """
    A stored row. The true outcome is under the name the model's task gives it: true_class
    (classifiers) or true_value (regressors). Rows stored before the upgrade to any task
    have a null model_version, prediction, threshold and positive_class.
    """
)
# The columns of a stored row that do not depend on the contract (stored_prediction adds
# the id and the true outcome).
STORED_ROW = {
    "id": {"description": "The row's own id, in insertion order", "type": "integer"},
    "observation": {
        "description": "The body of the predict request, exactly as received",
        "type": "string",
    },
    "model_version": {
        "description": "The model that answered (model.version of GET /health at the time)",
        "type": ["string", "null"],
    },
    "prediction": {
        "description": text(
            """
            What the model produced, as stored: a binary classifier's probability, decision
            and label; a multiclass classifier's label and probabilities; a regressor's
            value, or one number per target under the target's name
            """
        ),
        "type": ["object", "null"],
    },
    "proba": {
        "description": "A binary classifier's probability of the positive class, else null",
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": 1,
    },
    "threshold": {
        "description": "A binary classifier's threshold when it answered, else null",
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": 1,
    },
    "positive_class": {
        "description": "A binary classifier's positive class when it answered, else null",
        "anyOf": [{"$ref": "#/components/schemas/ClassLabel"}, {"type": "null"}],
    },
    "created_at": {
        "description": "When the prediction was stored, in UTC",
        "type": "string",
        "format": "date-time",
    },
}
