//! The storage-level error, shaped like Qdrant's own `StorageError` so that every failure reaches
//! the client with the code and the message a real Qdrant would send.

use qdrant_edge::OperationError;

/// An error of a collection-level or point-level operation.
///
/// The variants and their `Display` texts follow Qdrant's
/// `lib/storage/src/content_manager/errors.rs`; `server::status` turns them into `tonic::Status`
/// with Qdrant's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StorageError {
    /// The request is well-formed but its content is wrong (dimension, type, unknown vector name).
    #[error("Wrong input: {description}")]
    BadInput { description: String },
    /// The collection to create exists already. Qdrant words it as a wrong input too.
    #[error("Wrong input: {description}")]
    AlreadyExists { description: String },
    /// A collection or a point that the request names does not exist.
    #[error("Not found: {description}")]
    NotFound { description: String },
    /// The engine failed: I/O, corruption, a panicked worker.
    #[error("Service internal error: {description}")]
    ServiceError { description: String },
    /// The request message itself is malformed (missing field, unparsable UUID, unknown enum
    /// value). Qdrant's gRPC layer rejects these with its own raw message.
    #[error("{description}")]
    InvalidArgument { description: String },
    /// The operation ran out of time.
    #[error("Timeout: {description}")]
    Timeout { description: String },
    /// The testkit does not implement this part of the API.
    #[error("{description}")]
    Unimplemented { description: String },
    /// The request cannot be served in this server's state: a cluster operation on a single
    /// node (Qdrant's `BadRequest`).
    #[error("Bad request: {description}")]
    BadRequest { description: String },
}

impl StorageError {
    pub(crate) fn bad_input(description: impl Into<String>) -> Self {
        Self::BadInput {
            description: description.into(),
        }
    }

    pub(crate) fn invalid_argument(description: impl Into<String>) -> Self {
        Self::InvalidArgument {
            description: description.into(),
        }
    }

    pub(crate) fn service_error(description: impl Into<String>) -> Self {
        Self::ServiceError {
            description: description.into(),
        }
    }

    pub(crate) fn unimplemented(description: impl Into<String>) -> Self {
        Self::Unimplemented {
            description: description.into(),
        }
    }

    /// Qdrant's answer to a cluster change or a shard-key change when cluster mode is off
    /// (`do_update_collection_cluster`), checked before the collection is looked up.
    pub(crate) fn distributed_mode_disabled() -> Self {
        Self::BadRequest {
            description: "Distributed mode disabled".to_owned(),
        }
    }

    /// A request Qdrant's collection layer refuses as such (`CollectionError::BadRequest`).
    pub(crate) fn bad_request(description: impl Into<String>) -> Self {
        Self::BadRequest {
            description: description.into(),
        }
    }

    /// Qdrant's request validation of a `collection_name` that is empty or longer than 255
    /// characters (`length(min = 1, max = 255)`).
    pub(crate) fn collection_name_length(name: &str) -> Self {
        Self::invalid_argument(format!(
            "Validation error in body: [collection_name: value {name:?} invalid, must be from 1 to 255 characters]"
        ))
    }

    /// Qdrant's answer when a request names a collection that does not exist.
    pub(crate) fn collection_not_found(name: &str) -> Self {
        Self::NotFound {
            description: format!("Collection `{name}` doesn't exist!"),
        }
    }

    /// Qdrant's answer when a collection is created under a name already taken.
    pub(crate) fn collection_exists(name: &str) -> Self {
        Self::AlreadyExists {
            description: format!("Collection `{name}` already exists!"),
        }
    }
}

/// Maps an engine error the way Qdrant chains `OperationError` → `CollectionError` →
/// `StorageError` (`lib/collection/src/operations/types.rs`): what the caller sent wrong is a bad
/// input, a missing point is "not found", and what broke inside is a service error.
impl From<OperationError> for StorageError {
    fn from(err: OperationError) -> Self {
        match err {
            OperationError::WrongVectorDimension { .. }
            | OperationError::MalformedVectorBlob { .. }
            | OperationError::MalformedPayloadBlob { .. }
            | OperationError::VectorNameNotExists { .. }
            | OperationError::TypeError { .. }
            | OperationError::TypeInferenceError { .. }
            | OperationError::ValidationError { .. }
            | OperationError::MissingRangeIndexForOrderBy { .. }
            | OperationError::MissingMapIndexForFacet { .. }
            | OperationError::VariableTypeError { .. }
            | OperationError::NonFiniteNumber { .. } => Self::bad_input(err.to_string()),
            OperationError::WrongSparse => {
                Self::bad_input("Conversion between sparse and regular vectors failed")
            }
            OperationError::WrongMulti => {
                Self::bad_input("Conversion between multi and regular vectors failed")
            }
            OperationError::PointIdError { missed_point_id } => Self::NotFound {
                description: format!("No point with id {missed_point_id} found"),
            },
            OperationError::ServiceError { description, .. } => Self::service_error(description),
            OperationError::Cancelled { description } => {
                Self::service_error(format!("Operation cancelled: {description}"))
            }
            OperationError::Timeout { description } => Self::Timeout {
                description: format!("Timeout error: {description}"),
            },
            OperationError::InconsistentStorage { .. }
            | OperationError::FileNotFound { .. }
            | OperationError::OutOfMemory { .. }
            | OperationError::OutOfAppendableCapacity { .. } => {
                Self::service_error(err.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_dimension_reads_like_qdrant() {
        let err = StorageError::from(OperationError::WrongVectorDimension {
            expected_dim: 4,
            received_dim: 3,
        });
        assert_eq!(
            err.to_string(),
            "Wrong input: Vector dimension error: expected dim: 4, got 3"
        );
    }

    #[test]
    fn missing_collection_reads_like_qdrant() {
        assert_eq!(
            StorageError::collection_not_found("books").to_string(),
            "Not found: Collection `books` doesn't exist!"
        );
    }
}
