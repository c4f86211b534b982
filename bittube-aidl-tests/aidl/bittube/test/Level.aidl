package bittube.test;

@Backing(type="long")
enum Level {
    LOW = 1 << 2,
    HIGH = 0x100000000,
}
