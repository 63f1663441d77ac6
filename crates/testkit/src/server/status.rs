//! Storage errors → `tonic::Status`, with the codes Qdrant's gRPC API uses
//! (`impl From<StorageError> for tonic::Status` in Qdrant).

use tonic::{Code, Status};

use crate::storage::StorageError;

impl From<StorageError> for Status {
    fn from(err: StorageError) -> Self {
        let code = match &err {
            StorageError::BadInput { .. }
            | StorageError::BadRequest { .. }
            | StorageError::InvalidArgument { .. } => Code::InvalidArgument,
            StorageError::AlreadyExists { .. } => Code::AlreadyExists,
            StorageError::NotFound { .. } => Code::NotFound,
            StorageError::ServiceError { .. } => Code::Internal,
            StorageError::Timeout { .. } => Code::DeadlineExceeded,
            StorageError::Unimplemented { .. } => Code::Unimplemented,
        };
        Status::new(code, err.to_string())
    }
}

/// The answer to a supported RPC used with a feature the testkit does not implement.
pub(crate) fn unsupported(method: &str, feature: &str) -> StorageError {
    StorageError::unimplemented(format!(
        "qdrant-tower-testkit does not implement {feature} in {method} yet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn already_exists_keeps_qdrant_wording_and_code() {
        let status = Status::from(StorageError::collection_exists("books"));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(
            status.message(),
            "Wrong input: Collection `books` already exists!"
        );
    }

    #[test]
    fn unsupported_names_the_method_and_the_feature() {
        let status = Status::from(unsupported("Collections/Update", "quantization_config"));
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(
            status.message(),
            "qdrant-tower-testkit does not implement quantization_config in Collections/Update yet"
        );
    }
}
