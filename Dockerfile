# zerodrop-controller image: docker build -t zerodrop-controller .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/zerodrop-controller ./cmd/zerodrop-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/zerodrop-controller /zerodrop-controller
USER 65532:65532
ENTRYPOINT ["/zerodrop-controller"]
